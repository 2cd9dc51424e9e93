//! How `gate` ends: one name per exit code. The codes are part of the CLI contract
//! (docs/cli.md#exit-codes): pipelines and scripts branch on them, so a code, once
//! given, never changes meaning.

use std::process::ExitCode;

/// The exit code of a command. Only [`Exit::Success`] is 0: everything else fails a
/// pipeline step (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Code 0: `gate request`: approved, this gate used the approval and its record verified.
    /// Other commands: done (valid, intact, a rule matches).
    Success = 0,
    /// Code 1: the answer is no: not approved (denied, expired, canceled, interrupted, already
    /// used), the server refused the action, a record or policy is invalid, the audit
    /// chain is broken.
    No = 1,
    /// Code 2: no decision could be had: bad usage or flags, config, auth, a request the
    /// server rejects, the server unreachable or failing, a file that cannot be read or
    /// written.
    CouldNotDecide = 2,
    /// Code 3: `gate request`: the approval's signed record does not verify (signature,
    /// commit or artifacts), so it is no approval. (`gate verify` answers an invalid
    /// record with [`Exit::No`].)
    RecordDoesNotVerify = 3,
}

impl Exit {
    /// [`Exit::Success`] for a yes, [`Exit::No`] for a no.
    pub fn yes_or_no(yes: bool) -> Exit {
        if yes { Exit::Success } else { Exit::No }
    }

    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    /// The documented codes; changing one breaks every pipeline that branches on it.
    #[test]
    fn codes_are_the_contract() {
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Exit::No.code(), 1);
        assert_eq!(Exit::CouldNotDecide.code(), 2);
        assert_eq!(Exit::RecordDoesNotVerify.code(), 3);
    }
}
