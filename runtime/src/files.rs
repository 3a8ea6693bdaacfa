//! Reading the files a user names (checkpoints, configs, tokenizer files) only when they are
//! regular files: opening a FIFO blocks until something writes to it, and a device can be read
//! forever, so anything else is refused before it is opened.

use std::fs::{File, FileType};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// `Ok` when `path` (after symlinks) is a regular file; otherwise an [`io::ErrorKind::InvalidInput`]
/// error saying what it is instead (`NotFound` when there is nothing).
pub fn check_regular(path: &Path) -> io::Result<()> {
    match not_regular(std::fs::metadata(path)?.file_type()) {
        None => Ok(()),
        Some(what) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}, where a file is expected"),
        )),
    }
}

/// What `kind` is, in words, when it is not a regular file (`None` when it is).
pub fn not_regular(kind: FileType) -> Option<&'static str> {
    Some(if kind.is_file() {
        return None;
    } else if kind.is_symlink() {
        "a symlink"
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    })
}

/// Opens `path` for reading once [`check_regular`] accepts it.
pub fn open_regular(path: &Path) -> io::Result<File> {
    check_regular(path)?;
    File::open(path)
}

/// Reads `path` as text once [`check_regular`] accepts it.
pub fn read_regular_to_string(path: &Path) -> io::Result<String> {
    check_regular(path)?;
    std::fs::read_to_string(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, "{}").unwrap();
        assert_eq!(read_regular_to_string(&file).unwrap(), "{}");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(check_regular(&link).is_ok(), "a symlink to a file is followed");

        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        // Opening the FIFO would block this test forever; it is refused first.
        for (path, what) in [(&fifo, "FIFO"), (&dir.path().to_path_buf(), "folder")] {
            let e = read_regular_to_string(path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(what), "{e}");
        }
        assert!(open_regular(Path::new("/dev/zero")).unwrap_err().to_string().contains("a device"));
        assert_eq!(check_regular(&dir.path().join("absent")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
