//! The per-user runtime directory: where the credential gate's records go when the state
//! directory cannot take them (or there is none). `$XDG_RUNTIME_DIR/maas-usage`, else
//! `maas-usage-<uid>` in the temporary directory (`$TMPDIR`, else `/tmp`); created mode 0700,
//! and used only while it is a directory (not a symlink) of this user that nobody else may
//! enter, so no other user can plant or read records there.

use std::fs;
use std::path::{Path, PathBuf};

use super::StateDir;
use crate::env::{self, Lookup};

/// Where the runtime directory is, as the environment says (or as `state show|reset
/// --runtime-dir` names it).
#[derive(Clone, Debug)]
pub struct RuntimeDir {
    xdg: Option<PathBuf>,
    tmp: PathBuf,
    /// This very directory (it must exist), whatever the environment says.
    exact: Option<PathBuf>,
}

impl RuntimeDir {
    /// From `XDG_RUNTIME_DIR` and `TMPDIR` (each only when absolute), as `env` gives them.
    pub fn from_env(env: Lookup<'_>) -> RuntimeDir {
        let absolute = |name| {
            env::get(env, name)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        RuntimeDir {
            xdg: absolute("XDG_RUNTIME_DIR"),
            tmp: absolute("TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp")),
            exact: None,
        }
    }

    /// The directory `path` itself (another user's runtime directory, such as the packaged
    /// units' `/run/maas-usage/maas-usage`), which must exist.
    pub fn at(path: &Path) -> RuntimeDir {
        RuntimeDir {
            xdg: None,
            tmp: PathBuf::new(),
            exact: Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())),
        }
    }

    /// The directory, made ready for use, or why none could be.
    pub fn open(&self) -> Result<StateDir, String> {
        if let Some(exact) = &self.exact {
            if !exact.is_dir() {
                return Err(format!("{}: not a directory", exact.display()));
            }
            return private_dir(exact);
        }
        let mut tried = Vec::new();
        if let Some(xdg) = &self.xdg {
            match private_dir(&xdg.join("maas-usage")) {
                Ok(d) => return Ok(d),
                Err(e) => tried.push(e),
            }
        }
        let base = &self.tmp;
        match uid_in(base).and_then(|uid| private_dir(&base.join(format!("maas-usage-{uid}")))) {
            Ok(d) => Ok(d),
            Err(e) => {
                tried.push(e);
                Err(tried.join("; "))
            }
        }
    }
}

/// Who this process is on disk: the owner of a file it creates in `base`.
fn uid_in(base: &Path) -> Result<u32, String> {
    use std::os::unix::fs::MetadataExt;
    // The OS's words only (tempfile's add the probe's random name).
    let fail = |e: std::io::Error| {
        let os = e.raw_os_error().map(std::io::Error::from_raw_os_error);
        format!("{}: {}", base.display(), os.unwrap_or(e))
    };
    let probe = tempfile::Builder::new()
        .prefix(".maas-usage-probe-")
        .tempfile_in(base)
        .map_err(fail)?;
    Ok(probe.as_file().metadata().map_err(fail)?.uid())
}

/// `path` as a directory of this user's only: created mode 0700 if missing; refused when it is
/// a symlink, not a directory, another user's, or open to group or others.
fn private_dir(path: &Path) -> Result<StateDir, String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let fail = |why: String| format!("{}: {why}", path.display());
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    // Not followed: a symlink someone planted is refused, not entered.
    let dir = fs::symlink_metadata(path).map_err(|e| fail(e.to_string()))?;
    if !dir.file_type().is_dir() {
        return Err(fail("not a directory (a symlink is not followed)".into()));
    }
    let me = uid_in(path)?;
    if dir.uid() != me {
        return Err(fail(format!(
            "belongs to another user (uid {}); remove it",
            dir.uid()
        )));
    }
    let mode = dir.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            "others may enter it (mode {mode:o}); run chmod 700 on it or remove it"
        )));
    }
    Ok(StateDir::at(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn env_of(vars: Vec<(&'static str, PathBuf)>) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.display().to_string())
        }
    }

    #[test]
    fn xdg_runtime_dir_first_then_a_private_directory_in_the_temporary_one() {
        let t = tempfile::tempdir().unwrap();
        let xdg = t.path().join("run");
        fs::create_dir(&xdg).unwrap();
        let tmp = t.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let env = env_of(vec![
            ("XDG_RUNTIME_DIR", xdg.clone()),
            ("TMPDIR", tmp.clone()),
        ]);
        let d = RuntimeDir::from_env(&env).open().unwrap();
        assert_eq!(d.path(), xdg.join("maas-usage"));
        let mode = fs::metadata(d.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Without XDG_RUNTIME_DIR (or with one that is not a directory): the temporary one.
        let file = t.path().join("a-file");
        fs::write(&file, "x").unwrap();
        let env = env_of(vec![("XDG_RUNTIME_DIR", file), ("TMPDIR", tmp.clone())]);
        let d = RuntimeDir::from_env(&env).open().unwrap();
        let name = d.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(d.path().starts_with(&tmp) && name.starts_with("maas-usage-"));
    }

    #[test]
    fn a_planted_symlink_or_an_open_directory_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = t.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let planted = t.path().join("planted");
        std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
        let e = private_dir(&planted).map(|_| ()).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
        let open_dir = t.path().join("open");
        fs::create_dir(&open_dir).unwrap();
        fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&open_dir).map(|_| ()).unwrap_err();
        assert!(e.contains("mode 777"), "{e}");
        // Nowhere usable: both reasons are said.
        let file = t.path().join("a-file");
        fs::write(&file, "x").unwrap();
        let env = env_of(vec![("XDG_RUNTIME_DIR", file.clone()), ("TMPDIR", file)]);
        let e = RuntimeDir::from_env(&env).open().map(|_| ()).unwrap_err();
        let (xdg, tmp) = e.split_once("; ").unwrap();
        assert!(
            xdg.contains("a-file/maas-usage") && tmp.contains("a-file"),
            "{e}"
        );
    }
}
