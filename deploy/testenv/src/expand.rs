//! The kubelet's `$(VAR)` expansion for command, args, env values and probes.
//!
//! Semantics follow Kubernetes: `$(NAME)` is replaced by the variable's value when
//! it is defined and left as it is otherwise; `$$` is an escaped `$`; any other `$`
//! is kept. There is no shell-style `$NAME` expansion and no nesting.

/// Expands `$(NAME)` references in `input` using `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let (text, advance) = match bytes[cursor + 1] {
                b'$' => ("$".to_string(), 1),
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        let value = lookup(name).unwrap_or_else(|| format!("$({name})"));
                        (value, close + 1)
                    }
                    None => ("$(".to_string(), 1),
                },
                _ => {
                    // Keep the `$` and the following character verbatim.
                    let ch_len = rest.chars().next().map_or(1, char::len_utf8);
                    (format!("${}", &rest[..ch_len]), ch_len)
                }
            };
            out.push_str(&text);
            cursor += advance + 1;
            checkpoint = cursor;
        } else {
            cursor += 1;
        }
    }
    out.push_str(&input[checkpoint..]);
    out
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(name: &str) -> Option<String> {
        match name {
            "POD_IP" => Some("127.0.0.10".into()),
            "NAME" => Some("flavio-0".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_defined_and_keeps_undefined() {
        assert_eq!(expand("$(POD_IP):10017", env), "127.0.0.10:10017");
        assert_eq!(expand("--name=$(NAME)", env), "--name=flavio-0");
        assert_eq!(expand("$(NOPE)-x", env), "$(NOPE)-x");
    }

    #[test]
    fn escapes_and_edge_cases() {
        assert_eq!(expand("$$(POD_IP)", env), "$(POD_IP)");
        assert_eq!(expand("a$b", env), "a$b");
        assert_eq!(expand("cost $", env), "cost $");
        assert_eq!(expand("$(unclosed", env), "$(unclosed");
        assert_eq!(expand("$(POD_IP)$(NAME)", env), "127.0.0.10flavio-0");
        assert_eq!(expand("é$(NAME)é", env), "éflavio-0é");
    }
}
