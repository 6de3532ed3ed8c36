//! The seccomp profile every sandbox is created with. The builtin one is
//! `docker/seccomp.json`, an allow-list narrower than the engine's default
//! (README, "Capacity and hardening", says what it leaves out and why).

/// docker/seccomp.json, compiled in.
pub const BUILTIN: &str = include_str!("../../docker/seccomp.json");

/// The `seccomp=<profile>` security option for a `REPLBOX_SECCOMP_PROFILE`
/// setting: `builtin`, `engine-default` (`None`: the engine's own profile),
/// or the path of a JSON profile. Read and checked once, at start-up.
pub fn security_opt(setting: &str) -> Result<Option<String>, String> {
    let text = match setting.trim() {
        "engine-default" => return Ok(None),
        "builtin" | "" => BUILTIN.to_string(),
        path => {
            std::fs::read_to_string(path).map_err(|e| format!("seccomp profile {path}: {e}"))?
        }
    };
    let profile: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("seccomp profile {setting}: not JSON: {e}"))?;
    if !profile["defaultAction"].is_string() || !profile["syscalls"].is_array() {
        return Err(format!(
            "seccomp profile {setting}: no defaultAction or syscalls (a Docker seccomp profile is expected)"
        ));
    }
    // Compact: the engine gets the text itself, with every container.
    Ok(Some(format!("seccomp={profile}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(profile: &serde_json::Value) -> Vec<String> {
        profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["action"] == "SCMP_ACT_ALLOW")
            .flat_map(|s| s["names"].as_array().unwrap().iter())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_builtin_profile_leaves_out_what_sandboxes_never_need() {
        let opt = security_opt("builtin").unwrap().unwrap();
        let profile: serde_json::Value =
            serde_json::from_str(opt.strip_prefix("seccomp=").unwrap()).unwrap();
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(
            profile["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64"])
        );
        let allowed = allowed(&profile);
        for needed in [
            "clone", "execve", "wait4", "prctl", "setsid", "ioctl", "socket",
        ] {
            assert!(allowed.iter().any(|n| n == needed), "{needed} missing");
        }
        for removed in [
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "keyctl",
            "add_key",
            "request_key",
            "userfaultfd",
            "perf_event_open",
            "bpf",
            "unshare",
            "setns",
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "kexec_load",
            "open_by_handle_at",
            "name_to_handle_at",
            "quotactl",
            "modify_ldt",
            "sync",
            "syncfs",
            "adjtimex",
            "clock_adjtime",
        ] {
            assert!(!allowed.iter().any(|n| n == removed), "{removed} allowed");
        }
        // Every name once (a typo'd duplicate would hide a mistake).
        let mut sorted = allowed.clone();
        sorted.sort();
        sorted.dedup();
        let filtered = ["clone", "personality", "socket"];
        let plain = allowed.iter().filter(|n| !filtered.contains(&n.as_str()));
        assert_eq!(plain.count() + filtered.len(), sorted.len());
    }

    #[test]
    fn engine_default_and_paths() {
        assert_eq!(security_opt("engine-default").unwrap(), None);
        let err = security_opt("/nonexistent/profile.json").unwrap_err();
        assert!(err.contains("/nonexistent/profile.json"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"{"names": []}"#).unwrap();
        let err = security_opt(path.to_str().unwrap()).unwrap_err();
        assert!(err.contains("defaultAction"), "{err}");
        std::fs::write(&path, BUILTIN).unwrap();
        assert!(security_opt(path.to_str().unwrap())
            .unwrap()
            .unwrap()
            .starts_with("seccomp={"));
    }
}
