//! NumPy `.npy` arrays and `.npz` archives (numpy's `np.save` / `np.savez` /
//! `np.savez_compressed`), read without trusting the file: every length is checked against the
//! bytes present, and anything outside what is supported is an error that says what is
//! accepted. Supported: format versions 1.0 to 3.0; little- and big-endian `f4`, `f8`, signed
//! and unsigned integers of 1 to 8 bytes and `b1`; C or Fortran order; stored or deflated npz
//! members (no zip64).

use crate::error::DataError;
use std::io::Read;
use std::path::Path;

/// An array read from a file: its shape (C order) and its values as f64.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The values in C (row-major) order.
    pub values: Vec<f64>,
    /// numpy's dtype code of the stored values (`<f4`, `|u1`, ...).
    pub dtype: String,
}

impl NpyArray {
    /// Whether the stored values were integers (or booleans).
    pub fn is_integer(&self) -> bool {
        !self.dtype.get(1..).is_some_and(|code| code.starts_with('f'))
    }
}

/// The first bytes of every NPY file.
const MAGIC: &[u8] = b"\x93NUMPY";

/// `values` as the bytes of an NPY 1.0 float32 file of `shape` (C order), built in memory so
/// that it is written with one call (candle's `write_npy` makes a system call per value: 16%
/// of a ResNet benchmark run went into writing its example maps). The header is the one candle
/// writes, `{'descr': '<f4', 'fortran_order': False, 'shape': (3,224,224,), }` padded with
/// spaces to a multiple of 16 bytes, so maps written before and after are byte-identical.
pub fn f32_npy(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: String = shape.iter().map(|d| format!("{d},")).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    let pad = 16 - (MAGIC.len() + 5 + header.len()) % 16;
    header.extend(std::iter::repeat_n(' ', pad % 16));
    header.push('\n');
    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + header.len() + 4 * values.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    values.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
    bytes
}

fn bad(path: &str, reason: impl Into<String>) -> DataError {
    DataError::File { path: path.to_string(), reason: reason.into() }
}

/// Reads `path`: an `.npy` file, or `FILE.npz:KEY` for the member `KEY` (`KEY.npy`) of an archive.
pub fn read_array(path: &str) -> Result<NpyArray, DataError> {
    if let Some((archive, key)) = path.rsplit_once(".npz:") {
        let archive = format!("{archive}.npz");
        let bytes = std::fs::read(&archive).map_err(|e| bad(&archive, format!("cannot read: {e}")))?;
        let member = npz_member(&bytes, key, &archive)?;
        return parse_npy(&member, path);
    }
    if path.ends_with(".npz") {
        return Err(bad(path, "an .npz archive holds several arrays: name one as FILE.npz:KEY"));
    }
    let bytes = std::fs::read(Path::new(path)).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    parse_npy(&bytes, path)
}

/// Parses the bytes of an `.npy` file (`what` names it in errors).
pub fn parse_npy(bytes: &[u8], what: &str) -> Result<NpyArray, DataError> {
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err(bad(what, "not an NPY file (no \\x93NUMPY magic); save arrays with numpy.save"));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10usize),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err(bad(what, format!("NPY format version {major}.{minor}; accepted: 1.0, 2.0, 3.0"))),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or_else(|| bad(what, format!("header of {header_len} bytes but the file has {}", bytes.len())))?;
    let header = std::str::from_utf8(header).map_err(|_| bad(what, "the header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| bad(what, format!("no 'descr' in the header {header:?}")))?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
    let fortran = match dict_value(header, "fortran_order").map(str::trim) {
        Some("False") => false,
        Some("True") => true,
        other => return Err(bad(what, format!("fortran_order {other:?}; expected True or False"))),
    };
    let shape_text = dict_value(header, "shape").ok_or_else(|| bad(what, "no 'shape' in the header"))?;
    let shape: Vec<usize> = shape_text
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad(what, format!("shape {shape_text:?} is not a tuple of sizes"))))
        .collect::<Result<_, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(what, format!("shape {shape:?} overflows")))?;
    let (size, decode) = decoder(&descr).ok_or_else(|| {
        bad(what, format!("dtype {descr:?}; accepted: float32/64, (u)int8/16/32/64, bool, either byte order"))
    })?;
    let data = &bytes[start + header_len..];
    let needed = count.checked_mul(size).ok_or_else(|| bad(what, "array size overflows"))?;
    if data.len() < needed {
        return Err(bad(
            what,
            format!("{count} values of shape {shape:?} need {needed} bytes; the file has {}", data.len()),
        ));
    }
    let mut values: Vec<f64> = data[..needed].chunks_exact(size).map(decode).collect();
    if fortran && shape.len() > 1 {
        values = fortran_to_c(&values, &shape);
    }
    Ok(NpyArray { shape, values, dtype: descr })
}

/// The text after `'key':` in a Python dict literal, up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?;
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    Some(rest)
}

type Decode = fn(&[u8]) -> f64;

/// Bytes per value and the decoder of numpy dtype `descr` (`<f4`, `>i8`, `|u1`, ...).
fn decoder(descr: &str) -> Option<(usize, Decode)> {
    let (order, code) = descr.split_at_checked(1)?;
    let little = match order {
        "<" | "|" | "=" => true,
        ">" => false,
        _ => return None,
    };
    macro_rules! pick {
        ($t:ty) => {{
            let f: Decode = if little {
                |b| <$t>::from_le_bytes(b.try_into().expect("chunks_exact")) as f64
            } else {
                |b| <$t>::from_be_bytes(b.try_into().expect("chunks_exact")) as f64
            };
            Some((std::mem::size_of::<$t>(), f))
        }};
    }
    match code {
        "f4" => pick!(f32),
        "f8" => pick!(f64),
        "u1" => pick!(u8),
        "i1" => pick!(i8),
        "u2" => pick!(u16),
        "i2" => pick!(i16),
        "u4" => pick!(u32),
        "i4" => pick!(i32),
        "u8" => pick!(u64),
        "i8" => pick!(i64),
        "b1" => Some((1, |b: &[u8]| f64::from(u8::from(b[0] != 0)))),
        _ => None,
    }
}

/// Column-major values of `shape` reordered to row-major.
fn fortran_to_c(values: &[f64], shape: &[usize]) -> Vec<f64> {
    let mut out = vec![0.0; values.len()];
    let mut index = vec![0usize; shape.len()];
    for value in out.iter_mut() {
        // Fortran offset of the current C index: the first dimension varies fastest.
        let mut offset = 0;
        let mut stride = 1;
        for (i, &d) in index.iter().zip(shape) {
            offset += i * stride;
            stride *= d;
        }
        *value = values[offset];
        for (i, &d) in index.iter_mut().zip(shape).rev() {
            *i += 1;
            if *i < d {
                break;
            }
            *i = 0;
        }
    }
    out
}

/// The bytes of member `key` (`key` or `key.npy`) of a zip archive (stored or deflated);
/// `what` names the archive in errors.
pub fn npz_member(zip: &[u8], key: &str, what: &str) -> Result<Vec<u8>, DataError> {
    let u16_at = |at: usize| zip.get(at..at + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])));
    let u32_at = |at: usize| zip.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let damaged = || bad(what, "not a readable zip archive (numpy.savez writes one); zip64 is not supported");
    // End of central directory: the last PK\x05\x06 within the final 64 KiB + 22 bytes.
    let tail = zip.len().saturating_sub(65_557);
    let eocd = (tail..zip.len().saturating_sub(21))
        .rev()
        .find(|&i| zip[i..].starts_with(b"PK\x05\x06"))
        .ok_or_else(damaged)?;
    let entries = u16_at(eocd + 10).ok_or_else(damaged)?;
    let mut at = u32_at(eocd + 16).ok_or_else(damaged)?;
    let mut names = Vec::new();
    for _ in 0..entries {
        if !zip.get(at..).is_some_and(|z| z.starts_with(b"PK\x01\x02")) {
            return Err(damaged());
        }
        let method = u16_at(at + 10).ok_or_else(damaged)?;
        let compressed = u32_at(at + 20).ok_or_else(damaged)?;
        let size = u32_at(at + 24).ok_or_else(damaged)?;
        let (name_len, extra_len, comment_len) = (
            u16_at(at + 28).ok_or_else(damaged)?,
            u16_at(at + 30).ok_or_else(damaged)?,
            u16_at(at + 32).ok_or_else(damaged)?,
        );
        let local = u32_at(at + 42).ok_or_else(damaged)?;
        let name = zip.get(at + 46..at + 46 + name_len).ok_or_else(damaged)?;
        let name = String::from_utf8_lossy(name).to_string();
        at += 46 + name_len + extra_len + comment_len;
        let stem = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        if stem != key {
            names.push(stem);
            continue;
        }
        if !zip.get(local..).is_some_and(|z| z.starts_with(b"PK\x03\x04")) {
            return Err(damaged());
        }
        let data_start =
            local + 30 + u16_at(local + 26).ok_or_else(damaged)? + u16_at(local + 28).ok_or_else(damaged)?;
        let raw = zip.get(data_start..data_start.saturating_add(compressed)).ok_or_else(damaged)?;
        return match method {
            0 => Ok(raw.to_vec()),
            8 => {
                // Deflate expands at most ~1032-fold: a forged size cannot reserve more.
                let mut out = Vec::with_capacity(size.min(raw.len().saturating_mul(1032)).min(1 << 30));
                flate2::read::DeflateDecoder::new(raw)
                    .take(size as u64)
                    .read_to_end(&mut out)
                    .map_err(|e| bad(what, format!("member {name}: {e}")))?;
                Ok(out)
            }
            m => Err(bad(what, format!("member {name} uses zip method {m}; accepted: stored (0) or deflate (8)"))),
        };
    }
    Err(bad(what, format!("no array `{key}`; the archive has: {}", names.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_dtypes_byte_orders_and_fortran_order() {
        let f32s: Vec<u8> = [1.5f32, -2.0, 3.25, 0.0, 7.0, 8.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = parse_npy(&npy("<f4", false, "(2, 3)", &f32s), "a").expect("f4");
        assert_eq!(
            (a.shape.clone(), a.values.clone(), a.is_integer()),
            (vec![2, 3], vec![1.5, -2.0, 3.25, 0.0, 7.0, 8.5], false)
        );
        let be: Vec<u8> = [1i64, -5, 300].iter().flat_map(|v| v.to_be_bytes()).collect();
        let b = parse_npy(&npy(">i8", false, "(3,)", &be), "b").expect("i8");
        assert_eq!((b.is_integer(), b.values), (true, vec![1.0, -5.0, 300.0]));
        // Fortran order [[1, 2, 3], [4, 5, 6]] is stored column by column.
        let c = parse_npy(&npy("|u1", true, "(2, 3)", &[1, 4, 2, 5, 3, 6]), "c").expect("u1");
        assert_eq!(c.values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let scalar = parse_npy(&npy("<f8", false, "()", &2.5f64.to_le_bytes()), "s").expect("0-d");
        assert_eq!((scalar.shape.len(), scalar.values), (0, vec![2.5]));
    }

    #[test]
    fn refuses_truncated_and_foreign_files_without_panicking() {
        let f32s: Vec<u8> = [1.0f32; 6].iter().flat_map(|v| v.to_le_bytes()).collect();
        let good = npy("<f4", false, "(2, 3)", &f32s);
        for cut in 0..good.len() {
            let error = parse_npy(&good[..cut], "t.npy").expect_err("truncated").to_string();
            assert!(error.starts_with("t.npy: "), "{error}");
        }
        let complex = npy("<c8", false, "(1,)", &[0; 8]);
        assert!(parse_npy(&complex, "c").expect_err("complex").to_string().contains("accepted: float32/64"));
        let huge = npy("<f4", false, "(1000000000000, 1000000000000)", &[]);
        assert!(parse_npy(&huge, "h").is_err());
        assert!(parse_npy(b"PK\x03\x04 not npy", "z").expect_err("zip").to_string().contains("numpy.save"));
    }
}
