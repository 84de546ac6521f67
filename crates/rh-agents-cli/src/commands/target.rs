//! Where `export -o` writes, without clobbering what it should not.
//!
//! - `-` is standard output;
//! - a path that does not exist is created (never replacing a file that appears meanwhile);
//! - an existing regular file is refused, unless `--force`: then it is replaced atomically
//!   (a temporary file in the same directory, renamed over it);
//! - anything else that exists is written through, never replaced: a FIFO, a device such as
//!   `/dev/null`, a symbolic link to one of those (so `-o /dev/stdout` writes to standard
//!   output). A symbolic link to a regular file is refused like the file, unless `--force`:
//!   then the file it points to is overwritten in place and the link stays a link. A directory
//!   or a link that points nowhere is refused.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rh_agents::observe::escape::escape_control;

use super::io_exit;
use crate::exit::Exit;

/// Where the bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `-o -`.
    Stdout,
    /// A new file.
    New(PathBuf),
    /// An existing regular file, replaced atomically (`--force`).
    Replace(PathBuf),
    /// Opened for writing and written through: a FIFO, a device, or (with `truncate`) the
    /// regular file a symbolic link points to (`--force`).
    Through {
        /// The path as given.
        path: PathBuf,
        /// Whether to cut the file to the new length (a regular file behind a link).
        truncate: bool,
    },
}

/// Why nothing was written, and the exit code.
#[derive(Debug)]
pub(crate) struct Refused {
    /// One line for the user (escaped).
    pub(crate) message: String,
    /// 2 for what the user can fix, 74/75 for a failed system call.
    pub(crate) exit: Exit,
}

impl Refused {
    fn input(message: String) -> Self {
        Self {
            message,
            exit: Exit::BadInput,
        }
    }

    fn io(path: &Path, doing: &str, e: &io::Error) -> Self {
        Self {
            message: format!("cannot {doing} {}: {e}", shown(path)),
            exit: io_exit(e),
        }
    }
}

fn shown(path: &Path) -> String {
    escape_control(&path.display().to_string()).into_owned()
}

/// Decides how to write to `path` (see the module docs).
///
/// # Errors
///
/// [`Refused`] for a target that must not be written (an existing file without `--force`, a
/// directory, a dangling link) or that cannot be examined.
pub(crate) fn choose(path: &Path, force: bool) -> Result<Target, Refused> {
    if path.as_os_str() == "-" {
        return Ok(Target::Stdout);
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Target::New(path.into())),
        Err(e) => return Err(Refused::io(path, "examine", &e)),
    };
    if meta.file_type().is_symlink() {
        let to = std::fs::read_link(path).map_or_else(|_| "?".into(), |p| shown(&p));
        let target = match std::fs::metadata(path) {
            Ok(target) => target,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Refused::input(format!(
                    "{} is a symbolic link to {to}, which does not exist; remove the link or \
                     choose another file",
                    shown(path)
                )))
            }
            Err(e) => return Err(Refused::io(path, "follow the link", &e)),
        };
        if target.is_dir() {
            return Err(directory(path));
        }
        if target.is_file() && !force {
            return Err(Refused::input(format!(
                "{} is a symbolic link to the existing file {to}; use --force to overwrite \
                 that file, or choose another one",
                shown(path)
            )));
        }
        return Ok(Target::Through {
            path: path.into(),
            truncate: target.is_file(),
        });
    }
    if meta.is_dir() {
        return Err(directory(path));
    }
    if meta.is_file() {
        if !force {
            return Err(Refused::input(format!(
                "{} exists; use --force to replace it, or choose another file (`-o -` writes \
                 to standard output)",
                shown(path)
            )));
        }
        return Ok(Target::Replace(path.into()));
    }
    Ok(Target::Through {
        path: path.into(),
        truncate: false,
    })
}

fn directory(path: &Path) -> Refused {
    Refused::input(format!(
        "{} is a directory; name a file (in it, or elsewhere)",
        shown(path)
    ))
}

/// Writes `bytes` to `target`. A file created here is removed again if the write fails.
///
/// # Errors
///
/// [`Refused`] naming the file and the system's error.
pub(crate) fn write(target: &Target, bytes: &[u8]) -> Result<(), Refused> {
    match target {
        Target::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(bytes)
                .and_then(|()| out.flush())
                .map_err(|e| Refused {
                    message: format!("cannot write to standard output: {e}"),
                    exit: io_exit(&e),
                })
        }
        Target::New(path) => {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        // Created by someone else since `choose` looked.
                        Refused::input(format!(
                            "{} exists; use --force to replace it, or choose another file",
                            shown(path)
                        ))
                    } else {
                        Refused::io(path, "create", &e)
                    }
                })?;
            fill(file, bytes, true).map_err(|e| {
                let _ = std::fs::remove_file(path);
                Refused::io(path, "write", &e)
            })
        }
        Target::Replace(path) => replace(path, bytes),
        Target::Through { path, truncate } => {
            let file = OpenOptions::new()
                .write(true)
                .truncate(*truncate)
                .open(path)
                .map_err(|e| Refused::io(path, "open", &e))?;
            // A FIFO or device cannot be synced; a file behind a link is written in place.
            fill(file, bytes, false).map_err(|e| Refused::io(path, "write", &e))
        }
    }
}

/// Writes `bytes`; with `sync`, waits until they are on disk (before a rename makes them the
/// file, so a crash cannot leave an empty one in its place).
fn fill(mut file: File, bytes: &[u8], sync: bool) -> io::Result<()> {
    file.write_all(bytes)?;
    file.flush()?;
    if sync {
        file.sync_all()?;
    }
    Ok(())
}

/// Writes a temporary file next to `path` and renames it over `path`: readers see the old
/// file or the new one, never a part.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), Refused> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "export".into(), |n| n.to_string_lossy().into_owned());
    // A name of our own, created exclusively, so no file of the user's is touched.
    let (tmp, file) = (0..100)
        .find_map(|n| {
            let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(file) => Some(Ok((tmp, file))),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
                Err(e) => Some(Err(Refused::io(&tmp, "create", &e))),
            }
        })
        .unwrap_or_else(|| {
            Err(Refused {
                message: format!(
                    "cannot create a temporary file next to {}: too many exist",
                    shown(path)
                ),
                exit: Exit::IoError,
            })
        })?;
    // The new file keeps the old one's permissions (a private export stays private).
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = file.set_permissions(meta.permissions());
    }
    let written = fill(file, bytes, true)
        .map_err(|e| Refused::io(&tmp, "write", &e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Refused::io(path, "replace", &e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dash_is_standard_output_and_a_missing_path_is_a_new_file() {
        assert_eq!(choose(Path::new("-"), false).ok(), Some(Target::Stdout));
        let missing = std::env::temp_dir().join(format!("rh-none-{}.json", std::process::id()));
        assert_eq!(
            choose(&missing, false).ok(),
            Some(Target::New(missing.clone()))
        );
    }

    #[test]
    fn a_device_is_written_through() {
        assert_eq!(
            choose(Path::new("/dev/null"), false).ok(),
            Some(Target::Through {
                path: "/dev/null".into(),
                truncate: false
            })
        );
    }
}
