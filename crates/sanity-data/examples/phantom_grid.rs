//! Writes a grid of phantoms as a binary PGM image, to look at the generator's output:
//! `cargo run -p sanity-data --example phantom_grid -- OUT.pgm [SIZE] [SEED]`.
//! Top row of each pair: the image; below it: the image with the effusion mask brightened.

use sanity_data::{PhantomSpec, generate_phantoms};
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).ok_or("usage: phantom_grid OUT.pgm [SIZE] [SEED]")?;
    let size: usize = args.get(2).map_or(Ok(64), |s| s.parse())?;
    let seed: u64 = args.get(3).map_or(Ok(0), |s| s.parse())?;
    let cols = 8;
    let spec = PhantomSpec { n: cols * 2, size, noise_std: 0.03, effusion_fraction: 0.5, shortcut_rate: None };
    let data = generate_phantoms(&spec, seed, "phantom-grid")?;
    let masks = data.masks.as_ref().ok_or("phantoms have masks")?;
    let (width, height) = (cols * size, 4 * size);
    let mut pixels = vec![0u8; width * height];
    for i in 0..data.len() {
        let (gx, gy) = (i % cols, (i / cols) * 2);
        for y in 0..size {
            for x in 0..size {
                let v = data.image(i)[y * size + x];
                let m = masks[i * size * size + y * size + x];
                let shown = if m == 1 { 1.0 } else { v * 0.6 };
                pixels[(gy * size + y) * width + gx * size + x] = (v * 255.0) as u8;
                pixels[((gy + 1) * size + y) * width + gx * size + x] = (shown * 255.0) as u8;
            }
        }
    }
    let mut file = std::fs::File::create(out)?;
    write!(file, "P5\n{width} {height}\n255\n")?;
    file.write_all(&pixels)?;
    eprintln!("labels: {:?}", data.labels);
    Ok(())
}
