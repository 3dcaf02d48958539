// @ts-check
// The body states the entry hands the module with a body it read (src/wire.rs
// `BodyState`; a Rust test keeps these numbers equal to it).
export const BODY = Object.freeze({ UNREAD: 0, TEXT: 1, TOO_LARGE: 2, NOT_UTF8: 3 });
