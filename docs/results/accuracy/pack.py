# Usage: pack.py SPLIT.csv IMAGEFOLDER_ROOT OUT.npz [rgb]. Packs the leaf99 split into one npz: each image's longer side resized to L (aspect kept), top-left in an LxL array.
import csv, os, sys, numpy as np
from PIL import Image
rows = list(csv.DictReader(open(sys.argv[1])))
L = int(os.environ.get('PACK_SIZE', 192))  # longer side kept (>= 2x the model input)
classes = sorted({r['class'] for r in rows}); ci = {c: i for i, c in enumerate(classes)}
RGB = len(sys.argv) > 4 and sys.argv[4] == 'rgb'  # colour sheets; leaf99 scans are gray
X = np.zeros((len(rows), L, L, 3) if RGB else (len(rows), L, L), np.uint8); WH = np.zeros((len(rows), 2), np.int32)
for i, r in enumerate(rows):
    im = Image.open(sys.argv[2] + '/' + r['path']).convert('RGB' if RGB else 'L'); w, h = im.size; f = L / max(w, h)
    nw, nh = max(1, round(w * f)), max(1, round(h * f)); im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
    X[i, :nh, :nw] = np.asarray(im); WH[i] = (nw, nh)
np.savez_compressed(sys.argv[3], X=X, WH=WH, y=np.array([ci[r['class']] for r in rows]), test=np.array([r['split'] == 'test' for r in rows]))
print(X.shape, WH.min(0), WH.max(0))
