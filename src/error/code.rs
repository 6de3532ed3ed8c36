//! Every error code a client can see, in one enum. The codes are stable:
//! clients match on them. docs/api.md lists them all (a test checks it),
//! docs/protocol.md those a socket sends.

macro_rules! codes {
    ($($variant:ident = $text:literal,)*) => {
        /// A stable error code (`as_str` is what clients see).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }
        }
    };
}

codes! {
    AgentVersion = "agent_version",
    AlreadyExists = "already_exists",
    AlreadyJoined = "already_joined",
    BadArguments = "bad_arguments",
    BadBase64 = "bad_base64",
    BadBody = "bad_body",
    BadEnv = "bad_env",
    BadFrame = "bad_frame",
    BadJson = "bad_json",
    BadLogin = "bad_login",
    BadMcpRequest = "bad_mcp_request",
    BadQuery = "bad_query",
    BadRecoveryCode = "bad_recovery_code",
    BadRun = "bad_run",
    BadSignal = "bad_signal",
    BadTaskId = "bad_task_id",
    BadTimeout = "bad_timeout",
    BadTtl = "bad_ttl",
    BadWait = "bad_wait",
    BeingRemoved = "being_removed",
    BodyIncomplete = "body_incomplete",
    BodyTooLarge = "body_too_large",
    Busy = "busy",
    CapacityFull = "capacity_full",
    CheckInProgress = "check_in_progress",
    Conflict = "conflict",
    CrossSite = "cross_site",
    DirectoryNotEmpty = "directory_not_empty",
    DiskFull = "disk_full",
    EngineError = "engine_error",
    EngineUnavailable = "engine_unavailable",
    FileChanged = "file_changed",
    FileError = "file_error",
    FileTooLarge = "file_too_large",
    ImageMissing = "image_missing",
    ImageNotAllowed = "image_not_allowed",
    Internal = "internal",
    Invalid = "invalid",
    InvalidPath = "invalid_path",
    IsADirectory = "is_a_directory",
    MethodNotAllowed = "method_not_allowed",
    MissingEntry = "missing_entry",
    NameTaken = "name_taken",
    NoSession = "no_session",
    NoSuchClass = "no_such_class",
    NotADirectory = "not_a_directory",
    NotANotebook = "not_a_notebook",
    NotAcceptable = "not_acceptable",
    NotAssigned = "not_assigned",
    NotFound = "not_found",
    NotJoined = "not_joined",
    NotJson = "not_json",
    OriginRefused = "origin_refused",
    PathOutsideWorkspace = "path_outside_workspace",
    PermissionDenied = "permission_denied",
    SandboxMoving = "sandbox_moving",
    SandboxStopped = "sandbox_stopped",
    SandboxUnresponsive = "sandbox_unresponsive",
    SpawnFailed = "spawn_failed",
    TeacherOnly = "teacher_only",
    TooManyAttempts = "too_many_attempts",
    TooManyChecks = "too_many_checks",
    TooManySessions = "too_many_sessions",
    TooManySockets = "too_many_sockets",
    Unauthorized = "unauthorized",
    UnknownExercise = "unknown_exercise",
    UnknownJob = "unknown_job",
    UnknownKernel = "unknown_kernel",
    UnknownLanguage = "unknown_language",
    UnknownTool = "unknown_tool",
    UpgradeRequired = "upgrade_required",
    WorkspaceFull = "workspace_full",
    WorkspaceTooLarge = "workspace_too_large",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code is in docs/api.md's table, spelled as clients see it;
    /// every code docs/protocol.md names is a real one.
    #[test]
    fn every_code_is_documented() {
        let api = include_str!("../../docs/api.md");
        for code in ErrorCode::ALL {
            assert!(
                api.contains(&format!("| `{code}` |")),
                "docs/api.md's table of error codes lacks `{code}`"
            );
        }
        let protocol = include_str!("../../docs/protocol.md");
        let listed = protocol
            .split("Codes: ")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("docs/protocol.md lists the socket's codes after `Codes: `");
        for name in listed.split('`').skip(1).step_by(2) {
            assert!(
                ErrorCode::ALL.iter().any(|c| c.as_str() == name),
                "docs/protocol.md names `{name}`, which is no error code"
            );
        }
    }
}
