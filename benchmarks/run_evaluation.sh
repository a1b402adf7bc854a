#!/usr/bin/env bash
# The exact commands behind the tables of docs/evaluation.md (CPU only; about 100 minutes on 2 shared cores).
#
#   benchmarks/run_evaluation.sh [DATA_DIR] [WORK_DIR]
#
# DATA_DIR holds the public data sets (default ../shared/data); WORK_DIR receives results.json, the bar charts,
# the qualitative figures, the synthetic archive and the per-fold models (default /tmp/scr-evaluation).
# Nothing is written in the repository. Runs of 'ours' made before ensembles existed (issue 10, fourth round)
# trained one network per split: they say --members 1 (the default is now 'auto').
# 'auto' depends on the time a member takes: the fourth-round rows ran two at a time with OMP_NUM_THREADS=1
# (two torch processes of two threads each on two cores: an MMOTU member took 429 s instead of 53 s, so fewer
# members would have fitted).
# Tables: python benchmarks/evaluation_tables.py WORK_DIR/*/results.json
set -euo pipefail
DATA=${1:-../shared/data}
W=${2:-/tmp/scr-evaluation}
mkdir -p "$W"
export HF_HUB_OFFLINE=1

# 1. Synthetic ovarian-MRI archive (300 cases, 'small' grid): image, text (query = notes only), fused.
python -c "from SimilarCaseRetrievalLib.synthetic import make_archive; make_archive('$W/synthetic', n_cases=300, seed=0, size='small', progress=False)"
similar-cases evaluate --archive "$W/synthetic" --cv 5 --grid 32,32,16 --method handcrafted classifier ours \
  --mode image text fused --epochs 10 --feedback-rounds 2 --text-quantization none --out "$W/synthetic-results" \
  --work "$W/synthetic-models" --members 1
# 'ours' with the diagnosis-aware recipe (default since docs/training.md's A/B) at 60 epochs, and the
# classifier baseline at the same 60 epochs for a fair comparison (tables: the rows of these two runs).
# (fp32 text model: --text-quantization none; the int8 default is the run after it)
similar-cases evaluate --archive "$W/synthetic" --cv 5 --grid 32,32,16 --method ours --mode image text fused \
  --epochs 60 --feedback-rounds 2 --text-quantization none --out "$W/synthetic-ours" --work "$W/synthetic-models-60" --members 1
similar-cases evaluate --archive "$W/synthetic" --cv 5 --grid 32,32,16 --method ours --mode image text fused \
  --epochs 60 --feedback-rounds 2 --out "$W/synthetic-ours-int8" --work "$W/synthetic-models-60-int8" --members 1
similar-cases evaluate --archive "$W/synthetic" --cv 5 --grid 32,32,16 --method classifier --epochs 60 \
  --out "$W/synthetic-classifier60"
similar-cases evaluate --archive "$W/synthetic" --cv 5 --grid 32,32,16 --method random --out "$W/synthetic-random"
# issue 10 recipe (the defaults: 60 epochs, model selection + diagnosis prior on an inner validation split of
# each fold's index side, proxy loss); prints the paired bootstrap of ours-fused minus the best single mode
similar-cases evaluate --archive "$W/synthetic" --cv 5 --grid 32,32,16 --method ours --mode image text fused \
  --epochs 60 --out "$W/synthetic-ours60" --work "$W/synthetic-models" --members 1
# issue 10, second round (the defaults since: selection on fused search when the archive has notes)
similar-cases evaluate --archive "$W/synthetic" --cv 5 --grid 32,32,16 --method ours --mode image text fused \
  --epochs 60 --out "$W/synthetic-ours-i10b" --work "$W/synthetic-models-i10b" --members 1
# issue 10, third round (the defaults since: diagnosis head refitted, kept when the validation score agrees)
similar-cases evaluate --archive "$W/synthetic" --cv 5 --grid 32,32,16 --method ours --mode image text fused \
  --epochs 60 --out "$W/synthetic-ours-i10c" --work "$W/synthetic-models-i10c" --members 1
# issue 10, fourth round (the defaults since: an ensemble, --members auto within 15 minutes per split)
similar-cases evaluate --archive "$W/synthetic" --cv 5 --grid 32,32,16 --method ours --mode image text fused \
  --epochs 60 --out "$W/synthetic-ours-i10d" --work "$W/synthetic-models-i10d"

# 2. AdrenalMNIST3D: index = train split (1188), queries = test split (298).
similar-cases evaluate --dataset adrenal --data "$DATA/adrenalmnist3d" --method handcrafted classifier ours \
  --mode image --epochs 8 --feedback-rounds 2 --out "$W/adrenal" --members 1
similar-cases evaluate --dataset adrenal --data "$DATA/adrenalmnist3d" --method random --out "$W/adrenal-random"
# issue 10 recipe (the defaults), 60 epochs, and the classifier at the same 60 epochs
similar-cases evaluate --dataset adrenal --data "$DATA/adrenalmnist3d" --method ours --mode image --epochs 60 \
  --out "$W/adrenal-ours60" --work "$W/adrenal-models" --members 1
similar-cases evaluate --dataset adrenal --data "$DATA/adrenalmnist3d" --method classifier --epochs 60 \
  --out "$W/adrenal-classifier60"
# issue 10, third round (the defaults since)
similar-cases evaluate --dataset adrenal --data "$DATA/adrenalmnist3d" --method ours --mode image --epochs 60 \
  --out "$W/adrenal-ours-i10c" --work "$W/adrenal-models-i10c" --members 1
# issue 10, fourth round (ensemble, --members auto)
similar-cases evaluate --dataset adrenal --data "$DATA/adrenalmnist3d" --method ours --mode image --epochs 60 \
  --out "$W/adrenal-ours-i10d" --work "$W/adrenal-models-i10d"

# 3. MMOTU ovarian ultrasound (2D, 1000 images), 5-fold CV (folds by image: no patient ids).
similar-cases evaluate --dataset mmotu --data "$DATA/mmotu-otu2d-train" --cv 5 --method handcrafted classifier \
  ours --mode image --epochs 6 --feedback-rounds 2 --out "$W/mmotu" --members 1
# 'ours' (diagnosis-aware recipe) and the classifier baseline at 30 epochs.
similar-cases evaluate --dataset mmotu --data "$DATA/mmotu-otu2d-train" --cv 5 --method ours --mode image \
  --epochs 30 --feedback-rounds 2 --out "$W/mmotu-ours" --members 1
similar-cases evaluate --dataset mmotu --data "$DATA/mmotu-otu2d-train" --cv 5 --method classifier --epochs 30 \
  --out "$W/mmotu-classifier30"
similar-cases evaluate --dataset mmotu --data "$DATA/mmotu-otu2d-train" --cv 5 --method ours --mode image \
  --epochs 60 --out "$W/mmotu-ours60" --members 1
similar-cases evaluate --dataset mmotu --data "$DATA/mmotu-otu2d-train" --cv 5 --method random --out "$W/mmotu-random"
# issue 10 recipe (the defaults), 60 epochs
similar-cases evaluate --dataset mmotu --data "$DATA/mmotu-otu2d-train" --cv 5 --method ours --mode image \
  --epochs 60 --out "$W/mmotu-ours-i10" --work "$W/mmotu-models" --members 1
# issue 10, second round (the defaults since: class-mean selection score with P@1, test-time flip)
similar-cases evaluate --dataset mmotu --data "$DATA/mmotu-otu2d-train" --cv 5 --method ours --mode image \
  --epochs 60 --out "$W/mmotu-ours-i10b" --work "$W/mmotu-models-i10b" --members 1
# issue 10, third round (the defaults since: head refit), and the classifier at the same 60 epochs
similar-cases evaluate --dataset mmotu --data "$DATA/mmotu-otu2d-train" --cv 5 --method ours --mode image \
  --epochs 60 --out "$W/mmotu-ours-i10c" --work "$W/mmotu-models-i10c" --members 1
# issue 10, fourth round (ensemble, --members auto)
similar-cases evaluate --dataset mmotu --data "$DATA/mmotu-otu2d-train" --cv 5 --method ours --mode image \
  --epochs 60 --out "$W/mmotu-ours-i10d" --work "$W/mmotu-models-i10d"
similar-cases evaluate --dataset mmotu --data "$DATA/mmotu-otu2d-train" --cv 5 --method classifier --epochs 60 \
  --out "$W/mmotu-classifier60"

# 4. LIDC-IDRI reader contours (shape only): 300 random patients, 25% of them held out as queries.
similar-cases evaluate --dataset lidc --data "$DATA/lidc" --limit 300 --holdout 0.25 --method handcrafted \
  classifier ours --mode image --epochs 8 --feedback-rounds 2 --out "$W/lidc" --members 1
similar-cases evaluate --dataset lidc --data "$DATA/lidc" --limit 300 --holdout 0.25 --method random \
  --out "$W/lidc-random"
# issue 10 recipe (the defaults), 60 epochs, and the classifier at the same 60 epochs
similar-cases evaluate --dataset lidc --data "$DATA/lidc" --limit 300 --holdout 0.25 --method ours --mode image \
  --epochs 60 --out "$W/lidc-ours60" --work "$W/lidc-models" --members 1
similar-cases evaluate --dataset lidc --data "$DATA/lidc" --limit 300 --holdout 0.25 --method classifier \
  --epochs 60 --out "$W/lidc-classifier60"
# issue 10, third round (the defaults since)
similar-cases evaluate --dataset lidc --data "$DATA/lidc" --limit 300 --holdout 0.25 --method ours --mode image \
  --epochs 60 --out "$W/lidc-ours-i10c" --work "$W/lidc-models-i10c" --members 1
# issue 10, fourth round (ensemble, --members auto)
similar-cases evaluate --dataset lidc --data "$DATA/lidc" --limit 300 --holdout 0.25 --method ours --mode image \
  --epochs 60 --out "$W/lidc-ours-i10d" --work "$W/lidc-models-i10d"

# 5. IU chest X-ray reports (text only): R2Gen train split indexed, test split as queries. 'ours' = the text
#    branch of the encoder trained on synthetic folds 2-5 (the first model written in step 1).
similar-cases evaluate --dataset iu-xray --data "$DATA/iu-xray-reports" --method tfidf bm25 sentence \
  --feedback-rounds 2 --out "$W/iu-xray"
similar-cases evaluate --dataset iu-xray --data "$DATA/iu-xray-reports" --method random --out "$W/iu-xray-random"
MODEL=$(ls -dtr "$W"/synthetic-models/model-* | head -1)
similar-cases evaluate --dataset iu-xray --data "$DATA/iu-xray-reports" --method ours --mode text --model "$MODEL" \
  --feedback-rounds 2 --out "$W/iu-xray-ours"
# the text branch of the first 60-epoch fold model, fp32 and int8
for RUN in synthetic-models-60:fp32-60 synthetic-models-60-int8:int8; do
  MODEL=$(ls -dtr "$W/${RUN%%:*}"/model-* | head -1)
  similar-cases evaluate --dataset iu-xray --data "$DATA/iu-xray-reports" --method ours --mode text --model "$MODEL" \
    --feedback-rounds 2 --out "$W/iu-xray-ours-${RUN##*:}"
done
# the shipped model's text side, hybrid scoring (issue 10; re-run with each retrained shipped model)
similar-cases evaluate --dataset iu-xray --data "$DATA/iu-xray-reports" --method ours --mode text \
  --model Resources/Model --out "$W/iu-ours-shipped"
