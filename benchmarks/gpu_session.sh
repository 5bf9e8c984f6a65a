#!/bin/bash
# One prepared GPU session for this workplace's `device` tool (an H200 with JAX and no TensorFlow):
# the report CNN's GPU throughput, then recipes trained side by side (issues #6 and #7).
#
# Prepare here first (.gitignore keeps .gpu/ and .whl/ out of git; the device tool carries them):
#   python benchmarks/gpu_recipes.py pack --data ../shared/fer2013/fer2013.csv.gz --out .gpu/fer2013.npz.xz
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl keras==3.15.1 namex optree==0.20.0
# Run there with carry [".gpu", ".whl"]:   bash benchmarks/gpu_session.sh   (about 7 minutes)
# Back here:   python benchmarks/gpu_recipes.py score --data ../shared/fer2013/fer2013.csv.gz --out <unpacked>/gpu
#
# The runs: the plain network with cosine decay, the `augmented` recipe (training.AUGMENTED), and the same with random
# erasing, which the CPU could not finish in session 8 (benchmarks/RESULTS.md).
# Keep shifts, rotations and zooms out of GPU runs: Keras' JAX affine_transform made such workers miss a
# 190 s calibration window that flip-only workers met (keras-team/keras#23229 reports the same slowness).
# Few runs, long: processes sharing the GPU take turns rather than overlap (one alone ran training steps at 70,000 images/s,
# six together 46,000), so three runs get twice the epochs that six would. Every run recalibrates its BatchNorm
# statistics at the end (its history.csv keeps the last epoch's score before that).
set -o pipefail
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=jax
quiet() { grep -v -e '^W0000' -e '^I0000' -e 'WARNING: All log' --line-buffered; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import keras, jax; print('keras', keras.__version__, 'jax', jax.__version__, jax.devices())" || exit 1
timeout ${THROUGHPUT_S:-90} python3 benchmarks/gpu_recipes.py throughput --arrays .gpu/fer2013.npz.xz \
  --batches 128 2>&1 | quiet | tee $OUT/throughput.log
python3 benchmarks/gpu_recipes.py runs --arrays .gpu/fer2013.npz.xz --out /tmp/gpu --budget ${BUDGET:-360} \
  --reserve 45 --calibration-epochs 2 \
  --run plain_cos:schedule=cosine,recalibrate_bn=true \
  --run augmented:augment=true,augmentation=flip,schedule=cosine,label_smoothing=0.1,input_norm=per_image,recalibrate_bn=true \
  --run erase:augment=true,augmentation=flip+erase,schedule=cosine,label_smoothing=0.1,input_norm=per_image,recalibrate_bn=true \
  2>&1 | quiet | tee $OUT/runs.log
tar czf $OUT/gpu_runs.tar.gz -C /tmp gpu
