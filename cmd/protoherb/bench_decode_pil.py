# PIL's side of `protoherb bench decode`: draft (DCT-scaled) decode + BILINEAR resize of the centre
# crop box, as /work/shared/bench/pil_bench.py's "PIL draft + resize", in WORKERS processes.
# Usage: bench_decode_pil.py DIR SIZE RESIZE WORKERS PASSES
# Last line: "pil: <images/s> images/s".
import glob, io, os, sys, time
from multiprocessing import Pool
from PIL import Image

d, size, resize, workers, passes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
blobs = [open(f, "rb").read() for f in sorted(glob.glob(os.path.join(d, "*.jpg")))]

def one(b):
    im = Image.open(io.BytesIO(b))
    im.draft("RGB", (resize, resize))  # smallest DCT scale keeping both sides >= resize
    im.load()
    w, h = im.size
    s = min(w, h) * size / resize
    x0, y0 = (w - s) / 2, (h - s) / 2
    return im.convert("RGB").resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + s, y0 + s))

def worker(w):
    c0 = sum(os.times()[:2])
    for k in range(len(blobs) * passes):
        one(blobs[(k + w * 7) % len(blobs)])
    return len(blobs) * passes, sum(os.times()[:2]) - c0

if __name__ == "__main__":
    for b in blobs[:8]:
        one(b)
    with Pool(workers) as p:
        p.map(worker, range(workers))  # warm the processes
        t0 = time.perf_counter()
        r = p.map(worker, range(workers))
        el = time.perf_counter() - t0
    n, cpu = sum(x[0] for x in r), sum(x[1] for x in r)
    import PIL
    print(f"PIL {PIL.__version__}: {n} images in {el:.2f} s with {workers} processes", flush=True)
    print(f"pil-cpu: {cpu / n * 1e3:.3f} ms/image", flush=True)
    print(f"pil: {n / el:.0f} images/s", flush=True)
