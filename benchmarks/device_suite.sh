#!/usr/bin/env bash
# The realistic suite's GPU column: run on the lent GPU machine (the device tool), from the
# repository root, with the wheels of .whl/ carried (see below). Usage:
#   bash benchmarks/device_suite.sh COMMIT SECONDS [run.py options...]
# e.g. bash benchmarks/device_suite.sh 1be2510 420 realistic --presets sdf-tree --cases lca0
#
# That machine has PyTorch (CUDA), numpy, SciPy and scikit-image but not the I/O packages;
# the pure-Python ones travel as wheels in .whl/ (monai, nibabel, pydicom and its decoders,
# pynrrd, slicerio; `pip download --no-deps` for manylinux x86_64, cp312). SimpleITK's wheel
# (53 MB) does not fit the 64 MiB the tool carries, so an empty stand-in module is put on the
# path: the simulated-view cells never call it (the XA cells and the real pair do, so they
# are not run there). Cells run with device "auto", i.e. CUDA; their records go to
# $OUT/gpu.tgz (benchmarks/results/gpu/ once unpacked here), scored like the CPU ones.
set -uo pipefail
commit=$1 seconds=$2
shift 2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/stand-in/SimpleITK
printf 'def __getattr__(name):\n    raise ImportError("SimpleITK is not installed here")\n' \
    > /tmp/stand-in/SimpleITK/__init__.py
export PYTHONPATH=/tmp/site:/tmp/stand-in SDFCAR_COMMIT=$commit PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
results=/tmp/gpu
timeout "$seconds" python3 benchmarks/run.py "$@" --results "$results" --docs /tmp/docs
echo "run.py exit $?"
tar czf "$OUT/gpu.tgz" -C "$results" .
ls "$results"
