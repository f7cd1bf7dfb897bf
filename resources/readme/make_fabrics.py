"""Generated "fabric" photos for the README's report screenshot (usage: make_fabrics.py DATA_DIR/images/fabrics):
stripes, dots and checks in random colours, angles and contrast, with sensor noise and uneven light; 4 images
filed under a wrong class and 3 resized copies, as real folders have."""
import shutil, sys
from pathlib import Path
import numpy as np
from PIL import Image, ImageFilter

root = Path(sys.argv[1]); rng = np.random.default_rng(7); size = 192
yy, xx = np.mgrid[0:size, 0:size].astype(float)
def fabric(kind):
    a = rng.uniform(0, np.pi); p = rng.uniform(10, 22); u = xx*np.cos(a)+yy*np.sin(a); v = -xx*np.sin(a)+yy*np.cos(a)
    if kind == "striped": base = (np.sin(2*np.pi*u/p) > 0).astype(float)
    elif kind == "checked": base = ((np.sin(2*np.pi*u/p) > 0) ^ (np.sin(2*np.pi*v/p) > 0)).astype(float)
    else: base = ((np.mod(u, p)-p/2)**2 + (np.mod(v, p)-p/2)**2 < (p*rng.uniform(.18, .3))**2).astype(float)
    contrast = rng.uniform(.15, 1.0)
    c1, c2 = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    c2 = c1 + contrast*(c2-c1)
    img = base[..., None]*c1 + (1-base[..., None])*c2 + rng.normal(0, rng.uniform(8, 40), (size, size, 3))
    img += 30*np.sin(xx/size*np.pi*rng.uniform(0,2))[..., None]  # uneven light
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))
kinds = ["striped", "dotted", "checked"]
for kind in kinds:
    (root/kind).mkdir(parents=True, exist_ok=True)
    for i in range(60):
        fabric(kind).save(root/kind/f"{kind}_{i:03d}.jpg", quality=90)
for i, (src, dst) in enumerate([("striped", "dotted"), ("dotted", "checked"), ("checked", "striped"), ("striped", "checked")]):
    shutil.move(root/src/f"{src}_{50+i:03d}.jpg", root/dst/f"{src}_{50+i:03d}.jpg")
for i, kind in enumerate(kinds):
    im = Image.open(root/kind/f"{kind}_{10+i:03d}.jpg"); im.resize((150, 150)).save(root/kind/f"copy_of_{kind}_{10+i:03d}.jpg", quality=80)
