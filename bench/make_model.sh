#!/usr/bin/env bash
# bench/make_model.sh: derive bench/model/icecat_model.tsv, the small
# statistical model the synthetic catalog generator (bench/gen/shopgen.c)
# draws from, from the real Icecat catalog in ../shared/data.
#
#     bench/make_model.sh [SHARED_DATA_DIR]
#
# Only needed when the model should change: the model file is committed, so
# a clone without ../shared still generates a realistic catalog.  Needs
# python3 (standard library only).  Deterministic: same input, same file.
#
# What the model holds (one record per line, tab-separated, kind first):
#
#   category  ID  PARENT_ID  NAME  PRODUCTS  LOGPRICE_MEAN  LOGPRICE_SD
#       a two-level tree (PARENT_ID 0 = root); PRODUCTS is how many real
#       products fell into the leaf (0 for inner nodes); log-price is the
#       natural log of the price in dollars.
#   brand     CATEGORY_ID  NAME  COUNT      brands seen in a leaf
#   tword     CATEGORY_ID  WORD  COUNT  POS title words of a leaf; POS is the
#                                            mean relative position (0..1)
#   dword     CATEGORY_ID  WORD  COUNT  POS description words, same
#   tlen      CATEGORY_ID  WORDS  COUNT      title length (words besides brand)
#   color     NAME  COUNT                    the colour field ("" = none)
#   chr       CONTEXT  NEXT  COUNT           letter trigrams of title words
#       (^ marks the start, $ the end of a word): the generator spells new
#       product-line names with them
#   attr      CATEGORY_ID  NAME  COVERAGE  VALUE  COUNT
#       a text attribute common in the leaf: COVERAGE is the share of the
#       leaf's products that have it, COUNT how often VALUE occurs
#
# Products are put into categories by the keyword rules below (first match
# on the title, then on the description), because the source has a product
# type for fewer than 10% of its products.  These are statistics (word and
# brand frequencies, price moments), not the catalog itself.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
DATA=${1:-$TOP/../shared/data}
SRC="$DATA/chorus_icecat_supahands"
[ -f "$SRC/products.csv" ] || { echo "make_model: $SRC/products.csv not found" >&2; exit 1; }
mkdir -p "$TOP/bench/model"
OUT="$TOP/bench/model/icecat_model.tsv"

python3 - "$SRC" "$OUT" <<'EOF'
import collections, csv, math, re, sys

src, out = sys.argv[1], sys.argv[2]

# (group, leaf, regex): first match wins, on the title, then the description.
RULES = [
    ("Computers", "Laptops", r"\b(notebook|laptop|chromebook|netbook|ultrabook|2-in-1)s?\b(?! (bag|case|sleeve|stand|cooler|lock|battery|adapter|charger|power|keyboard))"),
    ("Computers", "Desktops & Workstations", r"\b(all-in-one pc|desktop pc|workstation|mini pc|thin client|tower pc|nettop)\b"),
    ("Computers", "Servers", r"\bserver\b(?! board)"),
    ("Computers", "Monitors", r"\b(monitor|lcd display|led display|flat panel display)\b"),
    ("Computers", "Keyboards & Mice", r"\b(keyboard|mouse|mice|trackball|presenter)\b"),
    ("Components", "Processors", r"\b(processor|xeon|core i[3579]|pentium|celeron|ryzen|opteron|athlon)\b"),
    ("Components", "Memory", r"\b(memory module|ddr[2345]?|sdram|dimm|so-dimm)\b"),
    ("Components", "Motherboards", r"\b(motherboard|desktop board|server board|mainboard)\b"),
    ("Components", "Graphics Cards", r"\b(graphics card|geforce|radeon|quadro|video card)\b"),
    ("Components", "Drives & SSDs", r"\b(ssd|hdd|hard drive|hard disk|solid state|sata drive)\b"),
    ("Components", "Cases & Fans", r"\b(chassis|pc case|computer case|fan|cooler|heatsink|power supply unit|psu)\b"),
    ("Printing", "Ink Cartridges", r"\b(ink|inkjet cartridge|printhead)\b"),
    ("Printing", "Toner & Drums", r"\b(toner|drum|fuser|imaging unit|developer|maintenance kit|transfer)\b"),
    ("Printing", "Printers & Scanners", r"\b(printer|mfp|scanner|laserjet|officejet|multifunction|plotter|designjet)\b"),
    ("Printing", "Paper & Labels", r"\b(paper|labels?|sheets|photo paper|transparenc|envelopes?|label tape)\b"),
    ("Cables", "Network Cables", r"\b(cat ?5e?|cat ?6a?|patch cable|patch cord|utp|ftp|ethernet cable|rj-?45|fiber|fibre|multimode)\b"),
    ("Cables", "Video Cables", r"\b(hdmi|vga|dvi(-d)?|displayport|d-sub|svga)\b"),
    ("Cables", "USB Cables & Adapters", r"\busb\b"),
    ("Cables", "Power Cables", r"\b(power cord|power cable|ac cord|extension cord|iec)\b"),
    ("Cables", "Audio Cables", r"\b(audio cable|rca|3\.5 ?mm|stereo cable|optical audio|toslink)\b"),
    ("Cables", "Other Cables", r"\b(cable|cord|wire)\b"),
    ("Networking", "Switches & Routers", r"\b(switch|router|hub|access point|firewall)\b"),
    ("Networking", "Network Adapters", r"\b(network card|network interface|nic|adapter|transceiver|wi-fi|wireless|sfp)\b"),
    ("Networking", "KVM", r"\bkvm\b"),
    ("Power", "UPS", r"\b(ups|uninterruptible|smart-ups|back-ups)\b"),
    ("Power", "PDUs & Surge Protectors", r"\b(pdu|surge|outlet|power strip|power distribution)\b"),
    ("Power", "Batteries & Chargers", r"\b(batter(y|ies)|aa|aaa|mah|charger|power bank)\b"),
    ("Audio & Video", "Headphones & Headsets", r"\b(headphones?|headsets?|earphones?|earbuds?)\b"),
    ("Audio & Video", "Speakers", r"\b(speakers?|soundbar|subwoofer)\b"),
    ("Audio & Video", "TVs", r"\b(tv|television)\b"),
    ("Audio & Video", "Projectors", r"\b(projector|projection|lamp)\b"),
    ("Audio & Video", "Cameras", r"\b(camera|lens|camcorder|webcam)\b"),
    ("Storage Media", "Optical Media", r"\b(dvd|cd-?rw?|blu-ray|bd-r)\b"),
    ("Storage Media", "Flash & Memory Cards", r"\b(flash|memory card|sd card|microsd|sdhc|sdxc|usb stick)\b"),
    ("Storage Media", "Tapes", r"\b(tape|lto|dat|data cartridge)\b"),
    ("Accessories", "Bags & Cases", r"\b(case|bag|sleeve|backpack|cover)\b"),
    ("Accessories", "Mounts & Stands", r"\b(mount|stand|bracket|arm|holder)\b"),
    ("Accessories", "Racks & Enclosures", r"\b(rack|cabinet|enclosure|shelf)\b"),
    ("Phones & Tablets", "Phones", r"\b(phone|smartphone|mobile|handset|dect)\b"),
    ("Phones & Tablets", "Tablets", r"\b(tablet|ipad|e-reader)\b"),
    ("Home & Kitchen", "Kitchen Appliances", r"\b(coffee|espresso|kettle|fryer|grinder|toaster|blender|mixer)\b"),
    ("Home & Kitchen", "Personal Care", r"\b(shaver|toothbrush|trimmer|hair|epilator)\b"),
    ("Toys", "Dolls & Toys", r"\b(doll|toy|kids'?|playhouse|puzzle)\b"),
    ("Office", "Office Supplies", r".*"),
]
RULES = [(g, l, re.compile(r, re.I)) for g, l, r in RULES]

def clean(s):
    return re.sub(r"[\t\r\n\\\"]+", " ", s or "").strip()

def classify(title, desc):
    for text in (title, desc):
        for g, l, rx in RULES:
            if rx.search(text or "") and rx.pattern != ".*":
                return (g, l)
    return ("Office", "Office Supplies")

TOKEN = re.compile(r"[^\s,;()\[\]{}]+")
def tokens(text):
    out = []
    for t in TOKEN.findall(clean(text)):
        t = t.strip(".:!?*'")
        if not t or len(t) > 20:
            continue
        if re.fullmatch(r"[\d\-./]{3,}", t):    # model and part numbers
            continue
        if re.fullmatch(r"[\W_]+", t):
            continue
        out.append(t)
    return out

rows = list(csv.DictReader(open(src + "/products.csv", newline="", encoding="utf-8")))
leaf_of = {}
cats = collections.OrderedDict()
for g, l, _ in RULES:
    cats.setdefault(g, [])
    if l not in cats[g]:
        cats[g].append(l)

n_leaf = collections.Counter()
brands = collections.defaultdict(collections.Counter)
tw = collections.defaultdict(collections.Counter)
tpos = collections.defaultdict(float)
dw = collections.defaultdict(collections.Counter)
dpos = collections.defaultdict(float)
tlen = collections.defaultdict(collections.Counter)
logp = collections.defaultdict(list)
colors = collections.Counter()

for r in rows:
    g, l = classify(r["title"], r["description"])
    leaf_of[r["product_id"]] = l
    n_leaf[l] += 1
    brand = clean(r["brand"])
    if brand:
        brands[l][brand] += 1
    btoks = {b.lower() for b in tokens(brand)}
    tt = [t for t in tokens(r["title"]) if t.lower() not in btoks]
    tlen[l][min(len(tt), 12)] += 1
    for i, t in enumerate(tt):
        tw[l][t] += 1
        tpos[(l, t)] += i / max(len(tt) - 1, 1)
    dt = tokens(r["description"])
    for i, t in enumerate(dt):
        dw[l][t] += 1
        dpos[(l, t)] += i / max(len(dt) - 1, 1)
    try:
        p = float(r["price"])
        if p > 0:
            logp[l].append(math.log(p))
    except ValueError:
        pass
    colors[clean(r["colour"]).split(",")[0]] += 1

# Attributes: text attributes with few distinct values, per leaf.
attr_vals = collections.defaultdict(collections.Counter)   # (leaf, name) -> values
SKIP = re.compile(r"colour|color|dimension|temperature|humidity|country|certification|compatib|_t_type$|model|ean|code|number|url|date", re.I)
with open(src + "/product_attributes.csv", newline="", encoding="utf-8") as f:
    for r in csv.DictReader(f):
        name = r["attribute"]
        if not name.startswith("attr_t_") or SKIP.search(name):
            continue
        l = leaf_of.get(r["product_id"])
        v = clean(r["value"])
        if l and v and len(v) <= 40:
            attr_vals[(l, name[7:])][v] += 1

lines = ["# bench/model/icecat_model.tsv: derived by bench/make_model.sh from the Icecat catalog",
         "# (chorus_icecat_supahands/products.csv, %d products). Statistics only; see the script." % len(rows)]
cid = 0
ids = {}
for g, leaves in cats.items():
    cid += 1
    gid = cid
    lines.append("category\t%d\t0\t%s\t0\t0\t0" % (gid, g))
    for l in leaves:
        cid += 1
        ids[l] = cid
        lp = logp[l] or [math.log(20.0)]
        m = sum(lp) / len(lp)
        sd = math.sqrt(sum((x - m) ** 2 for x in lp) / len(lp)) if len(lp) > 1 else 0.8
        lines.append("category\t%d\t%d\t%s\t%d\t%.4f\t%.4f" % (cid, gid, l, n_leaf[l], m, max(sd, 0.15)))
for g, leaves in cats.items():
    for l in leaves:
        i = ids[l]
        for b, c in sorted(brands[l].items(), key=lambda x: (-x[1], x[0]))[:40]:
            lines.append("brand\t%d\t%s\t%d" % (i, b, c))
        for t, c in sorted(tw[l].items(), key=lambda x: (-x[1], x[0]))[:120]:
            lines.append("tword\t%d\t%s\t%d\t%.3f" % (i, t, c, tpos[(l, t)] / c))
        for t, c in sorted(dw[l].items(), key=lambda x: (-x[1], x[0]))[:150]:
            lines.append("dword\t%d\t%s\t%d\t%.3f" % (i, t, c, dpos[(l, t)] / c))
        for k, c in sorted(tlen[l].items()):
            lines.append("tlen\t%d\t%d\t%d" % (i, k, c))
        cand = []
        for (al, name), vals in attr_vals.items():
            if al != l:
                continue
            tot = sum(vals.values())
            top = sum(c for _, c in vals.most_common(12))
            if len(vals) >= 2 and top >= 0.8 * tot and tot >= 3:
                cand.append((tot, name, vals))
        cand.sort(key=lambda x: (-x[0], x[1]))
        for tot, name, vals in cand[:4]:
            cov = min(1.0, tot / max(n_leaf[l], 1))
            for v, c in sorted(vals.items(), key=lambda x: (-x[1], x[0]))[:12]:
                lines.append("attr\t%d\t%s\t%.3f\t%s\t%d" % (i, name, cov, v, c))
# Letter trigrams of the title words, for the generator's product-line
# names: new words with the catalog's spelling habits, so the synthetic
# vocabulary keeps growing with the catalog as a real one does.
tri = collections.Counter()
for r in rows:
    for w in re.findall(r"[A-Za-z]+", r["title"]):
        w = w.lower()
        if len(w) < 3:
            continue
        w = "^^" + w + "$"
        for i in range(2, len(w)):
            tri[(w[i - 2:i], w[i])] += 1
for (ctx, ch), n in sorted(tri.items()):
    if n >= 2:
        lines.append("chr\t%s\t%s\t%d" % (ctx, ch, n))
for c, n in sorted(colors.items(), key=lambda x: (-x[1], x[0])):
    if n >= 5:
        lines.append("color\t%s\t%d" % (c, n))
with open(out, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
print("make_model: %d lines, %d leaves, %d products -> %s" % (len(lines), len(ids), len(rows), out), file=sys.stderr)
for l, n in n_leaf.most_common():
    print("  %6d  %s" % (n, l), file=sys.stderr)
EOF
