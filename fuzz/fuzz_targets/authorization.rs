//! The `Authorization` header: whatever the bytes, `bearer` either refuses or returns
//! a token that is a slice of the header, ASCII (so a byte offset is also a UTF-16
//! offset in the JS entry), of the token68 alphabet, surrounded only by the scheme and
//! ASCII spaces; and canonical base64url checks agree with a decode/re-encode.
#![no_main]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use mcp_edge_auth::token;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = token::bearer(Some(header)) {
        let start = t.as_ptr() as usize - header.as_ptr() as usize;
        assert!(header.is_ascii(), "an accepted header is ASCII");
        assert_eq!(&header[start..start + t.len()], t);
        assert!(!t.is_empty());
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
        let before = header[..start].trim_matches(|c| c == ' ' || c == '\t');
        assert!(before.eq_ignore_ascii_case("bearer"), "{before:?}");
        assert!(header[start + t.len()..]
            .bytes()
            .all(|b| b == b' ' || b == b'\t'));
    }
    for segment in header.split('.') {
        if segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            let canonical = URL_SAFE_NO_PAD
                .decode(segment)
                .is_ok_and(|bytes| URL_SAFE_NO_PAD.encode(bytes) == segment);
            assert_eq!(token::canonical_b64url(segment), canonical, "{segment:?}");
        }
    }
});
