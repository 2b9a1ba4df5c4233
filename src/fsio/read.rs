//! The one way the crate reads a file: bounded, without blocking, regular files only.
//!
//! Consumes a path and the [`Cap`] of what the file is meant to be (photo, gallery,
//! signature, ...); produces the bytes ([`read_capped`], [`read_text_capped`]) or an open
//! handle that streams at most the cap ([`open_capped`]), or a [`ReadError`] that says what
//! is wrong in a sentence without the path (the caller names the file and picks the error
//! class, hence the exit code, of its input).
//!
//! The rules, the same for every input:
//! - the file is opened with `O_NONBLOCK`, so a FIFO (named pipe) is refused at once instead
//!   of waiting for a writer that never comes; the flag is cleared again on a regular file;
//! - the opened handle must be a regular file (`fstat`, after symlinks were followed): a
//!   symlink to `/dev/zero`, a device, a socket or a folder is refused before a byte is read;
//! - a file whose reported size is over the cap is refused before reading, and the read stops
//!   one byte past the cap, so a file that lies about its size or grows while it is read is
//!   refused at the cap too. Nothing reads more than cap + 1 bytes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// What a file is meant to be and the most bytes read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// What the file is, for messages ("photo", "gallery", ...).
    pub what: &'static str,
    /// The most bytes read.
    pub bytes: u64,
}

impl Cap {
    /// A photo (JPEG or PNG): 64 MiB by default (`capture::Limits::max_file_bytes`).
    pub const PHOTO: Cap = Cap::new("photo", 64 << 20);
    /// A gallery file: 512 MiB by default (`gallery::ReadOptions::max_bytes`; a 10,000-image
    /// gallery of 12 keys x 512 f16 values is about 125 MB).
    pub const GALLERY: Cap = Cap::new("gallery", 512 << 20);
    /// A detached signature file (`FILE.sig`, a few hundred bytes).
    pub const SIGNATURE: Cap = Cap::new("signature file", 4 << 10);
    /// A public or secret key file (under a hundred bytes).
    pub const KEY: Cap = Cap::new("key file", 4 << 10);
    /// A bundle manifest (a few kilobytes).
    pub const MANIFEST: Cap = Cap::new("manifest", 1 << 20);
    /// A model file a manifest names, ONNX or compiled (the largest full-size embedder is
    /// about 260 MB).
    pub const MODEL: Cap = Cap::new("model file", 512 << 20);
    /// A model cache entry (a header and a decluttered model, about the model's size).
    pub const CACHE_ENTRY: Cap = Cap::new("model cache entry", 512 << 20);
    /// A CSV or TSV table: labels, pairs, encodings, image lists, syndromes, genes.
    pub const TABLE: Cap = Cap::new("CSV/TSV table", 256 << 20);
    /// The native engine's kernel choices file (a line per matrix shape).
    pub const KERNEL_CHOICES: Cap = Cap::new("kernel choices file", 1 << 20);
    /// A board profile (`.toml`).
    pub const BOARD_PROFILE: Cap = Cap::new("board profile", 1 << 20);
    /// A state file: the rollback marks (`revisions.json`).
    pub const STATE: Cap = Cap::new("state file", 1 << 20);

    /// A cap of `bytes` for `what`.
    pub const fn new(what: &'static str, bytes: u64) -> Cap {
        Cap { what, bytes }
    }

    /// The same kind of file with another limit (a limit the user set).
    pub const fn with_bytes(self, bytes: u64) -> Cap {
        Cap { bytes, ..self }
    }

    /// Every cap, for the docs and their test.
    pub const ALL: [Cap; 11] = [
        Cap::PHOTO,
        Cap::GALLERY,
        Cap::SIGNATURE,
        Cap::KEY,
        Cap::MANIFEST,
        Cap::MODEL,
        Cap::CACHE_ENTRY,
        Cap::TABLE,
        Cap::KERNEL_CHOICES,
        Cap::BOARD_PROFILE,
        Cap::STATE,
    ];
}

/// Why a file was not read. Its text is a sentence about the file, without the path.
#[derive(Debug)]
pub enum ReadError {
    /// The file does not exist (callers with an optional input treat this as "none").
    Missing(std::io::Error),
    /// The operating system refused to open or read it.
    Io(std::io::Error),
    /// Not a regular file once symlinks were followed: what it is instead.
    NotRegular(&'static str),
    /// The reported size is over the cap.
    TooLarge {
        /// The size the file system reported.
        size: u64,
        /// The cap.
        cap: Cap,
    },
    /// More bytes than the cap came out of it (it grew, or its size was not its content).
    Grew {
        /// The cap.
        cap: Cap,
    },
    /// Text was expected and the bytes are not UTF-8.
    NotText,
}

impl ReadError {
    /// Whether the file simply does not exist.
    pub fn is_missing(&self) -> bool {
        matches!(self, ReadError::Missing(_))
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing(e) | ReadError::Io(e) => write!(f, "cannot read: {e}"),
            ReadError::NotRegular(kind) => {
                write!(f, "is {kind}, not a regular file; refused without reading")
            }
            ReadError::TooLarge { size, cap } => write!(
                f,
                "the file is {size} bytes, over the limit of {} bytes for a {}",
                cap.bytes, cap.what
            ),
            ReadError::Grew { cap } => write!(
                f,
                "more than {} bytes came out of the file (the limit for a {}): it grew while \
                 it was read or its size is not its content; refused",
                cap.bytes, cap.what
            ),
            ReadError::NotText => write!(f, "is not UTF-8 text"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<ReadError> for std::io::Error {
    fn from(e: ReadError) -> std::io::Error {
        match e {
            ReadError::Missing(e) | ReadError::Io(e) => e,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}

fn io_error(e: std::io::Error) -> ReadError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ReadError::Missing(e)
    } else {
        ReadError::Io(e)
    }
}

/// An opened regular file that yields at most its cap: one byte more is an error
/// ([`ReadError::Grew`] inside an `InvalidData` I/O error). For decoders that stream.
#[derive(Debug)]
pub struct Capped {
    inner: std::io::Take<File>,
    size: u64,
    cap: Cap,
    seen: u64,
}

impl Capped {
    /// The size the file system reported at open (at most the cap).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The cap this handle reads through.
    pub fn cap(&self) -> Cap {
        self.cap
    }
}

impl Read for Capped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if self.seen > self.cap.bytes {
            return Err(ReadError::Grew { cap: self.cap }.into());
        }
        Ok(n)
    }
}

/// What a non-regular file is, in words.
fn kind_of(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for a bounded read: without blocking, a regular file required on the opened
/// handle, its reported size at most `cap`.
pub fn open_capped(path: &Path, cap: Cap) -> Result<Capped, ReadError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io_error)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind_of(meta.file_type())));
    }
    clear_nonblock(&file).map_err(ReadError::Io)?;
    if meta.len() > cap.bytes {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            cap,
        });
    }
    Ok(Capped {
        inner: file.take(cap.bytes.saturating_add(1)),
        size: meta.len(),
        cap,
        seen: 0,
    })
}

/// A regular file is never waited on, but reads should behave as plain blocking reads.
#[cfg(unix)]
fn clear_nonblock(file: &File) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function's caller owns for the call; no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(unix))]
fn clear_nonblock(_file: &File) -> std::io::Result<()> {
    Ok(())
}

/// Reads the whole file at `path` through `cap` (see the module docs).
pub fn read_capped(path: &Path, cap: Cap) -> Result<Vec<u8>, ReadError> {
    let mut f = open_capped(path, cap)?;
    let mut bytes = Vec::with_capacity(f.size() as usize);
    match f.read_to_end(&mut bytes) {
        Ok(_) => Ok(bytes),
        Err(_) if f.seen > cap.bytes => Err(ReadError::Grew { cap }),
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// [`read_capped`], as UTF-8 text.
pub fn read_text_capped(path: &Path, cap: Cap) -> Result<String, ReadError> {
    String::from_utf8(read_capped(path, cap)?).map_err(|_| ReadError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const SMALL: Cap = Cap::new("test file", 100);

    #[test]
    fn reads_regular_files_and_refuses_what_is_over_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(read_capped(&p, SMALL).unwrap(), b"hello");
        assert_eq!(read_text_capped(&p, SMALL).unwrap(), "hello");
        assert!(matches!(
            read_capped(&p, SMALL.with_bytes(4)),
            Err(ReadError::TooLarge { size: 5, .. })
        ));
        // exactly the cap is fine
        assert_eq!(read_capped(&p, SMALL.with_bytes(5)).unwrap(), b"hello");
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_text_capped(&p, SMALL),
            Err(ReadError::NotText)
        ));
        let e = read_capped(&d.path().join("none"), SMALL).unwrap_err();
        assert!(e.is_missing(), "{e}");
        let e = read_capped(d.path(), SMALL).unwrap_err();
        assert!(matches!(e, ReadError::NotRegular("a folder")), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_and_a_symlink_to_a_device_are_refused_at_once() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t = Instant::now();
        let e = read_capped(&fifo, SMALL).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(e.to_string().contains("FIFO"), "{e}");
        let zero = d.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = read_capped(&zero, Cap::GALLERY).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
    }

    #[test]
    fn a_sparse_file_is_refused_by_its_size_and_the_stream_stops_at_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sparse");
        std::fs::File::create(&p).unwrap().set_len(1 << 30).unwrap();
        let e = read_capped(&p, Cap::GALLERY).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { size, .. } if size == 1 << 30));
        // a file that grows after the open is cut at cap + 1 bytes and refused
        let g = d.path().join("grows");
        std::fs::write(&g, b"1234").unwrap();
        let mut h = open_capped(&g, SMALL.with_bytes(6)).unwrap();
        assert_eq!(h.size(), 4);
        std::fs::write(&g, b"123456789").unwrap();
        let mut out = Vec::new();
        let e = h.read_to_end(&mut out).unwrap_err();
        assert!(e.to_string().contains("more than 6 bytes"), "{e}");
        assert!(out.len() <= 7);
    }
    /// The ways of reading a file the crate could use instead of this module.
    const OTHER_READS: [&str; 9] = [
        "fs::read(",
        "fs::read_to_string(",
        "File::open(",
        "image::open(",
        "ImageReader::open(",
        "from_path(",
        ".read(true)",
        "model_for_path(",
        "commit_from_file(",
    ];

    /// Reads outside this module that are meant: (file, a piece of the line). Only `/proc`,
    /// `/sys`, device nodes the board opens on purpose, the random source and the folder fsync
    /// of the atomic writer (which opens a folder, not a file's content).
    const ALLOWED: [(&str, &str); 7] = [
        // lock files: opened to lock; only a holder's pid is read, bounded
        (
            "src/fsio.rs",
            "options.create(true).truncate(false).read(true).write(true)",
        ),
        ("src/fsio/read.rs", "options.read(true)"),
        ("src/fsio.rs", "File::open(dir)"),
        ("src/display/fb.rs", "std::fs::read_to_string(dir.join(f))"),
        ("src/cli/cmd/bench.rs", "\"/proc/self/status\""),
        ("src/cli/cmd/bench_engines.rs", "\"/proc/loadavg\""),
        ("src/cli/cmd/sign.rs", "std::fs::File::open(dev)"),
    ];

    /// The code of a source file without its test module (test modules end the file).
    fn without_tests(text: &str) -> &str {
        let lines: Vec<&str> = text.lines().collect();
        let mut offset = 0;
        for (i, line) in lines.iter().enumerate() {
            if line.trim() == "#[cfg(test)]" {
                let next = lines.get(i + 1).map_or("", |l| l.trim());
                if next.contains("mod ") && next.ends_with('{') {
                    return &text[..offset];
                }
            }
            offset += line.len() + 1;
        }
        text
    }

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Whether a source file is test code as a whole (`tests.rs`, `*_tests.rs`).
    fn is_test_file(p: &Path) -> bool {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name == "tests.rs" || name.ends_with("_tests.rs")
    }

    #[test]
    fn every_file_in_src_is_read_through_the_bounded_reader() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        sources(&root.join("src"), &mut files);
        files.sort();
        assert!(files.len() > 50, "{} source files", files.len());
        let mut used = [false; ALLOWED.len()];
        let mut found = Vec::new();
        for f in files.iter().filter(|f| !is_test_file(f)) {
            let rel = f
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(f).unwrap();
            for (n, line) in without_tests(&text).lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if !OTHER_READS.iter().any(|p| code.contains(p)) {
                    continue;
                }
                match ALLOWED
                    .iter()
                    .position(|(file, piece)| rel == *file && line.contains(piece))
                {
                    Some(i) => used[i] = true,
                    None => found.push(format!("{rel}:{}: {}", n + 1, line.trim())),
                }
            }
        }
        assert!(
            found.is_empty(),
            "files read without crate::fsio::read_capped / open_capped:\n{}",
            found.join("\n")
        );
        for (i, used) in used.iter().enumerate() {
            assert!(
                used,
                "allow-list entry {:?} matches nothing any more",
                ALLOWED[i]
            );
        }
    }
    /// The README's limits table has a row per cap, starting with what the file is and
    /// giving the cap's size.
    #[test]
    fn the_readme_table_lists_every_cap() {
        let readme = include_str!("../../README.md");
        let human = |b: u64| match b {
            b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
            b => format!("{} KiB", b >> 10),
        };
        for cap in Cap::ALL {
            let row = format!("| {}", cap.what);
            let line = readme
                .lines()
                .find(|l| l.trim_start().starts_with(&row))
                .unwrap_or_else(|| panic!("README lacks a row for the {} cap", cap.what));
            assert!(
                line.contains(&format!("| {} |", human(cap.bytes))),
                "README's {} row does not say {}: {line}",
                cap.what,
                human(cap.bytes)
            );
            assert!(
                line.contains("bounded_reads::") || line.contains("`"),
                "{line}"
            );
        }
    }
}
