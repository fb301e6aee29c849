//! Rotating a cluster's cookie with no failed request, as a pure decision.
//!
//! Users change the cookie Secret (`<name>-cookie`, key `cookie`): that is the
//! *desired* cookie. Pods read another Secret the operator owns,
//! `<name>-cookie-live`: one cookie per line, the first sent, all accepted,
//! read again by the nodes when it changes. Going from `C` to `D` takes three
//! writes of the live Secret, each only once every node holds the previous
//! one (their member-status `cookie_digest` equals the live Secret's):
//!
//! 1. `C, D`: every node accepts `D` and still sends `C`;
//! 2. `D, C`: every node sends `D` (all accept it already);
//! 3. `D`: `C` is refused from now on.
//!
//! A new desired cookie in the middle starts over from what every node
//! still accepts (the first line). What it leaves out: streams opened with
//! the old cookie stay open after step 3 (a cookie is checked when a call
//! starts).

/// What to do with the live Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// It holds the desired cookie alone: nothing to do.
    Steady,
    /// Write these lines (and requeue soon to watch the nodes take them).
    Write(Vec<String>),
    /// Some node does not hold the live cookies yet: look again soon.
    Wait,
}

/// The cookies of a cookie file's text, in order.
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The next step from `live` (the live Secret's cookies) towards `desired`,
/// `all_hold` being whether every node holds `live` now.
pub fn next(desired: &str, live: &[String], all_hold: bool) -> Step {
    match live {
        [only] if only == desired => Step::Steady,
        // Steps 2 and 3 each wait for the one before to reach every node.
        [first, second] if second == desired && first != desired => {
            if all_hold {
                Step::Write(vec![desired.to_string(), first.clone()])
            } else {
                Step::Wait
            }
        }
        [first, ..] if first == desired => {
            if all_hold {
                Step::Write(vec![desired.to_string()])
            } else {
                Step::Wait
            }
        }
        // Step 1, from the cookie every node still sends and accepts.
        [first, ..] => Step::Write(vec![first.clone(), desired.to_string()]),
        [] => Step::Write(vec![desired.to_string()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn three_steps_each_after_every_node_holds_the_last() {
        assert_eq!(next("c", &v(&["c"]), true), Step::Steady);
        // A new desired cookie: accept it everywhere first.
        assert_eq!(next("d", &v(&["c"]), false), Step::Write(v(&["c", "d"])));
        assert_eq!(next("d", &v(&["c", "d"]), false), Step::Wait);
        assert_eq!(
            next("d", &v(&["c", "d"]), true),
            Step::Write(v(&["d", "c"]))
        );
        assert_eq!(next("d", &v(&["d", "c"]), false), Step::Wait);
        assert_eq!(next("d", &v(&["d", "c"]), true), Step::Write(v(&["d"])));
        assert_eq!(next("d", &v(&["d"]), true), Step::Steady);
    }

    #[test]
    fn a_new_cookie_mid_rotation_starts_over_from_what_all_accept() {
        // Rotating c -> d, step 1 written; now e is wanted.
        assert_eq!(
            next("e", &v(&["c", "d"]), false),
            Step::Write(v(&["c", "e"]))
        );
        // Step 2 written (all send d, accept c): start from d.
        assert_eq!(
            next("e", &v(&["d", "c"]), true),
            Step::Write(v(&["d", "e"]))
        );
        // Back to the old one before it was sent: just drop the new one.
        assert_eq!(next("c", &v(&["c", "d"]), true), Step::Write(v(&["c"])));
        assert_eq!(lines("a\n\n b \n"), v(&["a", "b"]));
    }
}
