//! Globs for repository and ref patterns: `*` matches within one `/`-separated
//! segment, `**` matches across segments, `?` one character.

pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    matches(&p, &t)
}

fn matches(p: &[char], t: &[char]) -> bool {
    // Iterative with memo would be faster; patterns here are short, and the
    // recursion depth is bounded by the pattern length times the text length.
    let mut memo = vec![vec![None; t.len() + 1]; p.len() + 1];
    go(p, t, 0, 0, &mut memo)
}

fn go(p: &[char], t: &[char], i: usize, j: usize, memo: &mut Vec<Vec<Option<bool>>>) -> bool {
    if let Some(v) = memo[i][j] {
        return v;
    }
    let r = if i == p.len() {
        j == t.len()
    } else if p[i] == '*' {
        let double = i + 1 < p.len() && p[i + 1] == '*';
        let next = if double { i + 2 } else { i + 1 };
        let mut k = j;
        loop {
            if go(p, t, next, k, memo) {
                break true;
            }
            if k == t.len() || (!double && t[k] == '/') {
                break false;
            }
            k += 1;
        }
    } else if j < t.len() && (p[i] == '?' && t[j] != '/' || p[i] == t[j]) {
        go(p, t, i + 1, j + 1, memo)
    } else {
        false
    };
    memo[i][j] = Some(r);
    r
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("acme/*", "acme/web"));
        assert!(!glob_match("acme/*", "acme/web/sub"));
        assert!(glob_match("acme/**", "acme/web/sub"));
        assert!(glob_match("refs/heads/release/*", "refs/heads/release/1.2"));
        assert!(!glob_match("refs/heads/main", "refs/heads/main2"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("v?.*", "v1.2"));
        assert!(!glob_match("acme/*", "other/web"));
        assert!(glob_match("", ""));
    }
}
