//! IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed, and the Fashion-MNIST data set.
//!
//! Format (LeCun et al., <http://yann.lecun.com/exdb/mnist/>): two zero bytes, a type byte
//! (0x08 = unsigned byte, the only type these data sets use), the number of dimensions, then
//! each dimension as a big-endian u32, then the values row-major.

use crate::{DataError, Dataset};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// An IDX array of bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// The dimensions.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

fn bad(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::File { path: path.display().to_string(), reason: reason.into() }
}

/// Parses IDX bytes (already decompressed); `path` is for messages.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray, DataError> {
    let header =
        bytes.get(..4).ok_or_else(|| bad(path, format!("{} bytes is too short for an IDX header", bytes.len())))?;
    if header[0] != 0 || header[1] != 0 {
        return Err(bad(
            path,
            format!("wrong magic number {:02x}{:02x}; an IDX file starts with 0000", header[0], header[1]),
        ));
    }
    if header[2] != 0x08 {
        return Err(bad(
            path,
            format!("value type 0x{:02x} is not supported; accepted: 0x08 (unsigned byte)", header[2]),
        ));
    }
    let ndim = usize::from(header[3]);
    if ndim == 0 || ndim > 4 {
        return Err(bad(path, format!("{ndim} dimensions; accepted: 1 to 4")));
    }
    let dims_bytes = bytes.get(4..4 + 4 * ndim).ok_or_else(|| bad(path, "the file ends inside the dimension list"))?;
    let dims: Vec<usize> =
        dims_bytes.chunks_exact(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(path, format!("dimensions {dims:?} overflow")))?;
    let body = &bytes[4 + 4 * ndim..];
    if body.len() != count {
        return Err(bad(path, format!("dimensions {dims:?} need {count} values but the file holds {}", body.len())));
    }
    Ok(IdxArray { dims, data: body.to_vec() })
}

/// Reads an IDX file, plain or gzip-compressed (see [`decode_idx`]).
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let raw = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
    decode_idx(&raw, path)
}

/// The IDX array in `raw`, decompressed first when it starts with gzip's magic bytes. The
/// decompression stops one byte past what the header declares, so a forged archive (a gzip
/// bomb) costs no more memory than the array it claims to hold.
pub fn decode_idx(raw: &[u8], path: &Path) -> Result<IdxArray, DataError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return parse_idx(raw, path);
    }
    let gzip = |e: std::io::Error| bad(path, format!("not a valid gzip file: {e}"));
    let mut decoder = flate2::read::GzDecoder::new(raw);
    let mut bytes = Vec::new();
    decoder.by_ref().take(4).read_to_end(&mut bytes).map_err(gzip)?;
    let ndim = bytes.get(3).map_or(0, |&d| u64::from(d).min(4));
    decoder.by_ref().take(4 * ndim).read_to_end(&mut bytes).map_err(gzip)?;
    let declared = bytes
        .get(4..)
        .unwrap_or_default()
        .chunks_exact(4)
        .try_fold(1u64, |n, d| n.checked_mul(u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))));
    // Past the declared values by one byte, so that a longer body is reported as such.
    let limit = declared.and_then(|n| n.checked_add(1)).unwrap_or(0);
    decoder.take(limit).read_to_end(&mut bytes).map_err(gzip)?;
    parse_idx(&bytes, path)
}

/// Which half of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The 60 000 training images.
    Train,
    /// The 10 000 test images.
    Test,
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(DataError::File {
        path: dir.join(format!("{stem}.gz")).display().to_string(),
        reason: format!(
            "not found (nor without .gz); install Debian's files with `apt-get install dataset-fashion-mnist` (they go to {DEBIAN_FASHION_MNIST}) or give the directory that holds {stem}[.gz]"
        ),
    })
}

/// The first `limit` images (all when `None`) of a Fashion-MNIST split in `dir`, as
/// `[1, 28, 28]` float32 images scaled to [0, 1] (pixel / 255, as torchvision's `ToTensor`),
/// 10 classes.
pub fn fashion_mnist(dir: &Path, split: Split, limit: Option<usize>) -> Result<Dataset, DataError> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx(&images_path)?;
    let labels = read_idx(&labels_path)?;
    let &[n, h, w] = images.dims.as_slice() else {
        return Err(bad(&images_path, format!("dimensions {:?}; expected [n, rows, cols]", images.dims)));
    };
    if labels.dims != [n] {
        return Err(bad(
            &labels_path,
            format!("dimensions {:?}; expected [{n}] to match {}", labels.dims, images_path.display()),
        ));
    }
    if let Some(i) = labels.data.iter().position(|&l| l > 9) {
        return Err(bad(&labels_path, format!("label {} at index {i}; accepted: 0..=9", labels.data[i])));
    }
    let keep = limit.unwrap_or(n).min(n);
    Ok(Dataset {
        images: images.data[..keep * h * w].iter().map(|&p| f32::from(p) / 255.0).collect(),
        image_shape: [1, h, w],
        labels: labels.data[..keep].iter().map(|&l| usize::from(l)).collect(),
        masks: None,
        num_classes: 10,
        class_names: CLASS_NAMES.map(String::from).to_vec(),
    })
}

/// Fashion-MNIST's classes in label order (Xiao et al. 2017, Table 1).
pub const CLASS_NAMES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(body);
        out
    }

    #[test]
    fn parses_and_refuses_with_reasons() {
        let p = Path::new("x.idx");
        let ok = parse_idx(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6]), p).expect("valid");
        assert_eq!((ok.dims, ok.data), (vec![2, 3], vec![1, 2, 3, 4, 5, 6]));
        let err = |bytes: &[u8]| parse_idx(bytes, p).expect_err("invalid").to_string();
        assert!(err(&[0, 0]).contains("too short"));
        assert!(err(&[1, 0, 8, 1, 0, 0, 0, 1, 5]).contains("magic"));
        assert!(err(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 5]).contains("0x0d"));
        assert!(err(&idx(&[2, 3], &[1, 2, 3])).contains("need 6 values but the file holds 3"));
        assert!(err(&[0, 0, 8, 2, 0, 0]).contains("inside the dimension list"));
        assert!(
            err(&idx(&[u32::MAX, u32::MAX, u32::MAX], &[])).contains("overflow") || cfg!(target_pointer_width = "32")
        );
    }

    #[test]
    fn gzip_is_decompressed_no_further_than_the_header_declares() {
        let gzip = |bytes: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut gz, bytes).expect("gzip");
            gz.finish().expect("gzip")
        };
        let path = Path::new("x.idx");
        let array = decode_idx(&gzip(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6])), path).expect("valid");
        assert_eq!((array.dims, array.data), (vec![2, 3], vec![1, 2, 3, 4, 5, 6]));
        // Two values declared, 64 MiB of zeros behind them: refused after reading three.
        let mut forged = idx(&[2], &[1, 2]);
        forged.resize(2 + (64 << 20), 0);
        let err = decode_idx(&gzip(&forged), path).expect_err("refused").to_string();
        assert!(err.contains("need 2 values but the file holds 3"), "{err}");
        assert!(decode_idx(&[0x1f, 0x8b, 0, 0], path).expect_err("refused").to_string().contains("gzip"));
    }

    #[test]
    fn gzip_and_plain_files_read_the_same_and_missing_files_say_how_to_install() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = idx(&[1, 2, 2], &[0, 51, 102, 255]);
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &bytes).expect("write");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &idx(&[1], &[7])).expect("gzip");
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte.gz"), gz.finish().expect("gzip")).expect("write");
        let d = fashion_mnist(dir.path(), Split::Test, None).expect("reads");
        assert_eq!(d.images, [0.0, 0.2, 0.4, 1.0]);
        assert_eq!((d.labels.clone(), d.image_shape, d.num_classes), (vec![7], [1, 2, 2], 10));
        let err = fashion_mnist(dir.path(), Split::Train, None).expect_err("no train files").to_string();
        assert!(err.contains("apt-get install dataset-fashion-mnist"), "{err}");
    }
}
