//! `stages:` on a rule: instead of `require`, never with it or with `decision`; each
//! stage named (uniquely, not blank) and needing at least one approval.

use std::collections::HashSet;

use super::super::error::PolicyError;
use super::RuleAt;

impl RuleAt<'_> {
    /// The rule's `stages`, when it has some. Their `require` entries are checked with
    /// the rule's own (`check_require`).
    pub(super) fn check_stages(&self) -> Result<(), PolicyError> {
        let rule = self.rule;
        if rule.stages.is_empty() {
            return Ok(());
        }
        let section = self.src.at("stages", self.at.0);
        if rule.decision.is_some() {
            return Err(self.src.err(
                section,
                format!("rule `{}` has both `decision` and `stages`: choose one", rule.name),
            ));
        }
        if !rule.require.is_empty() {
            return Err(self.src.err(
                section,
                format!(
                    "rule `{}` has both `require` and `stages`: put every requirement in a stage",
                    rule.name
                ),
            ));
        }
        let mut names = HashSet::new();
        // Each stage's errors point at its own `name`, found in order from the section.
        let mut line = section.0;
        for (i, stage) in rule.stages.iter().enumerate() {
            let at = self.src.at("name", line);
            line = at.0 + 1;
            if stage.name.trim().is_empty() {
                return Err(self
                    .src
                    .err(at, format!("rule `{}`: stage {} has an empty `name`", rule.name, i + 1)));
            }
            if !names.insert(stage.name.as_str()) {
                return Err(self.src.err(
                    at,
                    format!("rule `{}` has two stages named `{}`", rule.name, stage.name),
                ));
            }
            if stage.require.is_empty() {
                return Err(self.src.err(
                    at,
                    format!(
                        "rule `{}`: stage `{}` has an empty `require`: it needs at least one approval",
                        rule.name, stage.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::core::policy::Policy;

    const STAGED: &str = "version: 1
groups:
  security: [sam, alice]
  release: [rita, alice]
rules:
  - name: prod
    stages:
      - name: security
        require: [{ group: security }]
      - name: release
        require:
          - { group: release, count: 2 }
";

    #[test]
    fn stages_yield_requirements_in_order_with_their_stage() {
        let p = Policy::parse("p.yaml", STAGED).unwrap();
        let reqs = p.requirements(&p.rules[0]);
        let got: Vec<(&str, u32, Option<&str>)> = reqs
            .iter()
            .map(|r| (r.group.as_str(), r.count, r.stage.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![("security", 1, Some("security")), ("release", 2, Some("release"))]
        );
        assert_eq!(reqs[1].members, vec!["rita".to_string(), "alice".to_string()]);
    }

    #[test]
    fn bad_stages_are_located() {
        let cases = [
            (
                STAGED.replace("    stages:\n", "    require: [{ group: security }]\n    stages:\n"),
                "both `require` and `stages`",
                (8, 5),
            ),
            (
                STAGED.replace("    stages:\n", "    decision: approve\n    stages:\n"),
                "both `decision` and `stages`",
                (8, 5),
            ),
            (
                STAGED.replace("name: release", "name: security"),
                "two stages named `security`",
                (10, 9),
            ),
            (
                STAGED.replace("name: release", "name: \"  \""),
                "stage 2 has an empty `name`",
                (10, 9),
            ),
            (
                STAGED.replace("require: [{ group: security }]", "require: []"),
                "stage `security` has an empty `require`",
                (8, 9),
            ),
            (
                STAGED.replace("group: release, count: 2", "group: ops"),
                "group `ops`",
                (12, 22),
            ),
            (STAGED.replace("count: 2", "count: 3"), "only 2 members", (12, 31)),
            (
                STAGED.replace("require: [{ group: security }]", "requires: []"),
                "unknown field `requires`",
                (9, 9),
            ),
        ];
        for (text, want, at) in cases {
            let e = Policy::parse("p.yaml", &text).unwrap_err();
            assert!(e.message.contains(want), "{want}: {e}");
            assert_eq!((e.line, e.column), at, "{want}: {e}");
            assert_eq!(e.file, "p.yaml");
        }
    }
}
