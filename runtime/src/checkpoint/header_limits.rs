//! Bounds on a safetensors header, checked on its bytes before it is parsed. Parsing builds a
//! map entry per tensor and a number per shape dimension, so a small file could otherwise make
//! kiln allocate many times its size (a 78 MB header listing a million tensors peaked at 972 MB
//! in `kiln inspect`). With these bounds, parsing allocates about the header's size plus a few
//! hundred bytes per tensor.

/// The longest header accepted. Real ones are far smaller: an SDXL single file's is about
/// 250 KB; LoRAs with kohya's training metadata reach a few MB.
pub const MAX_HEADER_BYTES: u64 = 32 << 20;

/// The most tensors a file may list (an SDXL single file has about 2,500; LyCORIS files a few
/// thousand more).
pub const MAX_TENSORS: usize = 65_536;

/// The most dimensions a tensor may have (SD's weights have at most 4).
pub const MAX_RANK: usize = 8;

/// What is over a bound, in words, or `None`. `header` is the JSON text (as bytes): top-level
/// keys are tensors (plus `__metadata__`), and the numbers of the arrays one level inside an
/// entry are its shape and data offsets. Malformed JSON is left to the parser to name.
pub fn over_bounds(header: &[u8]) -> Option<String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let (mut tensors, mut array_numbers) = (0usize, 0usize);
    let mut array_open = false; // inside an entry's array, before its first number is counted
    let mut last_string = 0..0; // the latest string's contents, to tell `__metadata__` apart
    for (at, &byte) in header.iter().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    in_string = false;
                    last_string.end = at;
                }
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                last_string = at + 1..at + 1;
            }
            b'{' | b'[' => {
                depth += 1;
                array_open = depth == 3 && byte == b'[';
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 1 && &header[last_string.clone()] != b"__metadata__" => tensors += 1,
            b',' if depth == 3 => array_numbers += 1,
            b if depth == 3 && array_open && !b.is_ascii_whitespace() => {
                array_open = false;
                array_numbers += 1;
            }
            _ => {}
        }
        if tensors > MAX_TENSORS {
            return Some(format!("it lists more than {MAX_TENSORS} tensors, kiln's limit"));
        }
        if array_numbers > tensors * (MAX_RANK + 2) {
            return Some(format!("its shapes have more than {MAX_RANK} dimensions per tensor, kiln's limit"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tensors: usize, rank: usize) -> String {
        let entries: Vec<String> = (0..tensors)
            .map(|i| {
                let shape = vec!["2"; rank].join(", ");
                format!(r#""t{i}.weight": {{"dtype": "F16", "shape": [{shape}], "data_offsets": [0, 8]}}"#)
            })
            .collect();
        format!(
            r#"{{"__metadata__": {{"format": "pt", "note": "a: {{[,]}} \" , ]"}}, {}}}"#,
            entries.join(", ")
        )
    }

    #[test]
    fn real_sized_headers_pass() {
        assert_eq!(over_bounds(header(3, 4).as_bytes()), None);
        assert_eq!(over_bounds(header(MAX_TENSORS, 4).as_bytes()), None);
        assert_eq!(over_bounds(header(5, MAX_RANK).as_bytes()), None);
        assert_eq!(over_bounds(header(1, 0).as_bytes()), None, "a scalar has shape []");
    }

    #[test]
    fn too_many_tensors_or_dimensions_are_named() {
        let e = over_bounds(header(MAX_TENSORS + 1, 1).as_bytes()).unwrap();
        assert!(e.contains("65536 tensors"), "{e}");
        let e = over_bounds(header(2, 5000).as_bytes()).unwrap();
        assert!(e.contains("8 dimensions"), "{e}");
    }
}
