//! Characters that change how the text around them reads without showing
//! themselves: what a terminal or a page must not be handed raw from a
//! value someone else chose (Trojan Source: a bidi override makes a table
//! row read differently; a zero-width space makes two names look alike).

/// A control character, a C1 control, or an invisible format character:
/// bidi embeddings, overrides and isolates, zero-width characters, the
/// byte-order mark, line and paragraph separators, invisible operators,
/// interlinear annotation marks and tag characters.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// `text` with every [`is_hidden`] character written as a visible escape
/// (`\u{202e}`, `\n`), for a terminal.
pub fn escaped(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| {
                if is_hidden(c) {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Serialized JSON with every [`is_hidden`] character that JSON lets
/// through raw (C1 controls, format characters) written as a `\uXXXX`
/// escape: the same JSON to a parser, nothing hidden to a terminal. Such
/// characters can only stand inside strings, where the escape means them.
pub fn json_escaped(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.chars().any(is_hidden) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_hidden(c) && !matches!(c, '\n' | '\r' | '\t') {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_zero_width_and_c1_are_hidden_letters_are_not() {
        for c in [
            '\u{202E}',
            '\u{2066}',
            '\u{200B}',
            '\u{9B}',
            '\u{FEFF}',
            '\u{E0041}',
            '\n',
        ] {
            assert!(is_hidden(c), "U+{:04X}", u32::from(c));
        }
        for c in ['a', 'é', 'ß', '中', '😀', ' ', '-'] {
            assert!(!is_hidden(c), "{c}");
        }
        assert_eq!(escaped("a\u{202E}b\u{200B}c"), "a\\u{202e}b\\u{200b}c");
        assert_eq!(escaped("plain"), "plain");
    }

    #[test]
    fn escaped_json_means_the_same_and_shows_everything() {
        let value = serde_json::json!({"m": "x\u{9B}y\u{202E}z\u{E0041}"});
        let json = serde_json::to_string(&value).unwrap();
        let safe = json_escaped(&json);
        assert!(!safe.chars().any(is_hidden), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
        // Pretty JSON keeps its newlines.
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        assert!(json_escaped(&pretty).contains('\n'));
    }
}
