#!/usr/bin/env bash
# On the device, in the call after train.sh: the pieces of NAME's latest checkpoint to $OUT
# (train.sh left them in /root/cache/NAME_checkpoint/). Locally, `cat NAME_step-N.tar.* | tar -x`
# under a folder that holds the model folder NAME gives NAME/checkpoints/step-N, which
# `zip2zip train ... --out NAME --resume` continues. bring.sh NAME
set -e
N=${1:?usage: bring.sh NAME}
mkdir -p $OUT && cp /root/cache/${N}_checkpoint/* $OUT/ && ls -la $OUT
