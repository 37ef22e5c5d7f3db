"""What the compute tests share."""

# Deep inside the Mandelbrot set every pixel runs max_iter iterations: seconds of wasm work with
# progress every few rows, and under the pixel count the service splits into tiles.
LONG_MANDELBROT = {
    "width": 200,
    "height": 300,
    "center_x": 0.0,
    "center_y": 0.0,
    "scale": 0.01,
    "max_iter": 100_000,
}
