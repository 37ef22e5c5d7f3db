//! {{NAME}}: a starter kernel. It inverts the colours of an RGBA8 image; change it to compute
//! what you need, keeping the signature (the ABI is described in vh.rs).
#![no_std]

mod vh;

#[no_mangle]
pub extern "C" fn {{EXPORT}}(
    input: *const u8,
    in_len: u32,
    params: *const f64,
    n_params: i32,
    result: *mut vh::VhResult,
) -> i32 {
    let params = unsafe { vh::params(params, n_params) };
    let (width, height) = match params {
        [w, h] => match (vh::int_param(*w, 1, 16384), vh::int_param(*h, 1, 16384)) {
            (Some(w), Some(h)) => (w as u64, h as u64),
            _ => return vh::fail(vh::BAD_PARAMS, b"width and height must be integers in 1..16384\0"),
        },
        _ => return vh::fail(vh::BAD_PARAMS, b"expected the params width and height\0"),
    };
    if width * height * 4 != in_len as u64 {
        return vh::fail(vh::BAD_INPUT, b"the input is not width x height RGBA8 pixels\0");
    }
    let input = unsafe { vh::input(input, in_len) };
    let out = match vh::alloc_slice(in_len) {
        Some(out) => out,
        None => return vh::fail(vh::NO_MEMORY, b"out of memory\0"),
    };
    let row = (width * 4) as usize;
    for (y, (dst, src)) in out.chunks_exact_mut(row).zip(input.chunks_exact(row)).enumerate() {
        for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
            d[0] = 255 - s[0];
            d[1] = 255 - s[1];
            d[2] = 255 - s[2];
            d[3] = s[3];
        }
        if y % 64 == 63 {
            vh::progress(y as i32 + 1, height as i32); // the host may stop the job here
        }
    }
    vh::progress(height as i32, height as i32);
    vh::done(result, out)
}
