# Split file (path,class,split) of a synth herbarium: train images as train, test images with their
# true class from solution.csv as test; paths relative to DIR/nybg2020 (seed_pipeline's --split-file root).
import csv, json, sys
d = sys.argv[1]
tr = json.load(open(f'{d}/nybg2020/train/metadata.json', encoding='latin-1'))
te = json.load(open(f'{d}/nybg2020/test/metadata.json', encoding='latin-1'))
cat = {a['image_id']: a['category_id'] for a in tr['annotations']}
sol = {int(r['Id']): int(r['Predicted']) for r in csv.DictReader(open(f'{d}/solution.csv'))}
with open(f'{d}/nybg2020/split.csv', 'w', newline='') as f:
    w = csv.writer(f); w.writerow(['path', 'class', 'split'])
    for im in tr['images']: w.writerow(['train/' + im['file_name'], cat[im['id']], 'train'])
    for im in te['images']: w.writerow(['test/' + im['file_name'], sol[im['id']], 'test'])
print(len(tr['images']), 'train', len(te['images']), 'test')
