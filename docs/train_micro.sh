#!/usr/bin/env bash
# How the bundled micro SAM 2.1 (efficient_sam2/weights/) was trained, step by step, on 2 CPU cores.
# Wall times are from the run that produced the shipped files (a shared 2-core machine); see README "The micro model".
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs}

# 1. data: 60 training videos per stress subset (420), 30 held-out validation videos per subset (210)  [~3 + 2 min]
efficient-sam2 synth --out "$DATA/train" --videos 60 --split train --seed 0 --subset all --no-progress
efficient-sam2 synth --out "$DATA/val" --videos 30 --split val --seed 0 --subset all --no-progress
# the training runs' validation J&F watches 8 held-out standard videos (links, no copies)
for kind in JPEGImages Annotations; do
    mkdir -p "$DATA/valstd/$kind/256p"
    for i in 0 1 2 3 4 5 6 7; do ln -sfn "$(realpath "$DATA/val/$kind/256p/standard_000$i")" "$DATA/valstd/$kind/256p/"; done
done

# 2. stage A, from scratch at 128 px [32 min]. It ran on commit f763be7, where the micro config was 256 px native
#    with 4-token stride-16 windows and the IoU head was trained with L1 (SAM 2's loss):
#      git checkout f763be7 && pip install -e . && \
#      efficient-sam2 train --model micro --data "$DATA/train" --out "$RUNS/stageA" --image-size 128 --steps 1000 \
#          --batch-size 4 --clip-len 4 --lr 1e-3 --warmup 100 --save-every 25 --threads 1
#    With the current code the closest command is:
efficient-sam2 train --model micro --data "$DATA/train" --out "$RUNS/stageA" --image-size 128 --steps 1000 --batch-size 4 \
    --clip-len 4 --lr 1e-3 --warmup 100 --save-every 25 --threads 1 --iou-loss l1

# 3. stage B, fine-tuning at 128 px (then the native size) with the BCE IoU loss [27 min]
efficient-sam2 train --model micro --checkpoint "$RUNS/stageA/model.pt" --data "$DATA/train" \
    --out "$RUNS/stageB" --image-size 128 --steps 1500 --batch-size 6 --clip-len 4 --lr 5e-4 --warmup 30 --save-every 25 --threads 1

# 4. stage C: every multimask output supervised a little (stage B's third output on tracked frames drifted to the
#    whole frame, which made the paper's all-masks routing keep every window) [12.5 min]
efficient-sam2 train --model micro --checkpoint "$RUNS/stageB/model.pt" --data "$DATA/train" \
    --out "$RUNS/stageC" --image-size 128 --steps 900 --batch-size 6 --clip-len 4 --lr 2e-4 --warmup 20 --all-outputs-weight 0.2 \
    --save-every 25 --threads 2

# 5. stage D: at 256 px, the native size since this stage, with 8-frame clips (SAM 2's length, so every slot of the
#    7-frame memory bank is trained). At 128 px an object covered one or two stride-16 tokens and tracking stalled
#    near J&F 60; the 128 px weights run unchanged at 256 px, and fine-tuning there lifts them (validation J&F
#    60.8 at 128 px before, 69.8 at 256 px after). [75 min]
efficient-sam2 train --model micro --checkpoint "$RUNS/stageC/model.pt" --data "$DATA/train" \
    --val-data "$DATA/valstd" --out "$RUNS/stageD256" --image-size 256 --steps 1300 --batch-size 4 --clip-len 8 \
    --lr 4e-4 --warmup 30 --all-outputs-weight 0.2 --val-every 325 --save-every 25 --threads 2

# 6. stage E: the same recipe continued from stage D with a lower peak rate (validation J&F 65.4 -> 70.5 -> 68.6 ->
#    73.4 at steps 550 ... 2200; stage D ended at 69.8) [116 min]
efficient-sam2 train --model micro --checkpoint "$RUNS/stageD256/model.pt" --data "$DATA/train" \
    --val-data "$DATA/valstd" --out "$RUNS/stageE" --image-size 256 --steps 2200 --batch-size 4 --clip-len 8 \
    --lr 2.5e-4 --warmup 40 --all-outputs-weight 0.2 --val-every 550 --save-every 25 --threads 2

# 7. stage F: once more from stage E at a peak rate of 2e-4 (validation J&F 74.8 -> 69.8 -> 73.7 -> 76.0 at steps
#    600 ... 2400; 77.8 on the 30 held-out standard videos, stage E 72.8). The shipped run was interrupted at step
#    525 and continued with the same command plus --resume. [110 min]
efficient-sam2 train --model micro --checkpoint "$RUNS/stageE/model.pt" --data "$DATA/train" \
    --val-data "$DATA/valstd" --out "$RUNS/stageF" --image-size 256 --steps 2400 --batch-size 4 --clip-len 8 \
    --lr 2e-4 --warmup 40 --all-outputs-weight 0.2 --val-every 600 --save-every 25 --threads 2

# 8. stage G: the same once more from stage F at a peak rate of 1.5e-4 (validation J&F 78.2 -> 75.4 -> 78.6 ->
#    79.8 at steps 600 ... 2400; 80.8 on the 30 held-out standard videos, stage F 77.8). The shipped run was
#    interrupted at step 300 and continued with the same command plus --resume. [140 min]
efficient-sam2 train --model micro --checkpoint "$RUNS/stageF/model.pt" --data "$DATA/train" \
    --val-data "$DATA/valstd" --out "$RUNS/stageG" --image-size 256 --steps 2400 --batch-size 4 --clip-len 8 \
    --lr 1.5e-4 --warmup 40 --all-outputs-weight 0.2 --val-every 600 --save-every 25 --threads 2
cp "$RUNS/stageG/model.pt" efficient_sam2/weights/sam2.1_hiera_micro.pt

# 9. the SWR shortcut on the trained model, 6 training videos per subset, the paper's routing [3.0 min]
mkdir -p "$RUNS"
efficient-sam2 train-shortcut --model micro --checkpoint efficient_sam2/weights/sam2.1_hiera_micro.pt \
    --video-dir "$DATA/train/JPEGImages/256p" --mask-dir "$DATA/train/Annotations/256p" \
    --video-list docs/micro_shortcut_videos.txt --max-objects 0 --epochs 2 \
    --output "$RUNS/shortcut" --no-progress
cp "$RUNS/shortcut/shortcut.pth" efficient_sam2/weights/sam2.1_hiera_micro_shortcut.pt

# 10. stage H: "segment anything" image mode mixed with the video recipe, from the stage G weights (issue 22).
#     Single images with every segment annotated (background regions included; subsets instances, salient,
#     camouflaged), 400 per subset for training, 40 per subset held out [1.3 min + 6 s]:
efficient-sam2 synth --images 400 --out "$DATA/images_train" --split train --seed 0 --no-progress
efficient-sam2 synth --images 40 --out "$DATA/images_val" --split val --seed 0 --no-progress
#     Every step: 2 video clips of 8 frames (the stage G recipe, so tracking keeps being trained) plus 4 images x 8
#     instances (one click anywhere on the instance -> 3 outputs with the min-over-outputs loss, or a jittered box;
#     then a correction click in the error; the IoU head trained to the true IoU), image loss weight 0.5.
#     One thread on the shared machine (7-15 s a step there, depending on the load: 4 jobs shared 2 cores). The
#     run was started with --steps 800, stopped at step 25 (in the warm-up, whose rates do not depend on --steps)
#     and continued with --steps 450, then stopped at step 50 and continued with this command plus --resume (the
#     cosine schedule from step 50 on is the 300-step one; steps 30-50 had the 450-step one's slightly higher
#     rates). [~75 min]
efficient-sam2 train --model micro --checkpoint efficient_sam2/weights/sam2.1_hiera_micro.pt --data "$DATA/train" \
    --val-data "$DATA/valstd" --out "$RUNS/stageH" --steps 300 --batch-size 2 --clip-len 8 --lr 1e-4 --warmup 30 \
    --all-outputs-weight 0.2 --image-data "$DATA/images_train" --image-batch 4 --image-instances 8 \
    --image-weight 0.5 --val-every 150 --save-every 25 --threads 1
#     (interrupted runs continue with the same command plus --resume)
#     Result (NOT shipped; the bundled weights are still stage G's): validation J&F on the 8 videos 77.1 -> 78.2 at
#     steps 150, 300 (stage G: 79.8); held-out standard dense J&F 78.0 on the 30 videos (stage G 80.8):
#       efficient-sam2 bench --accuracy --data "$DATA/val" --subsets standard --videos-per-subset 30 --threads 1 \
#           --clock cpu --configs dense --checkpoint "$RUNS/stageH/model.pt" --output "$RUNS/accuracy_stageH"
#     Automatic masks (grid 16x16, filters off, 8 held-out images per subset): mIoU instances 6.1 -> 6.9, salient
#     9.5 -> 14.5, camouflaged 3.1 -> 16.3, all of it on background regions; objects stayed at ~5 IoU because the
#     model still returns nearly the same mask wherever the click is (README "Automatic masks with the micro model").

# 11. prompt tuning (not shipped): only the prompt encoder, the mask decoder and no_mem_embed, on cached image
#     features, tracking held by distilling the stage G model's recorded decoder calls on 40 training videos
#     [34 min on one core]. Single-click IoU on the held-out images (python docs/click_iou.py data/images_val
#     --checkpoint runs/promptB/model.pt) went 0.06 / 0.11 / 0.04 -> 0.06 / 0.28 / 0.19 (instances / salient /
#     camouflaged, all of the gain on background regions) and validation J&F 79.9 -> 78.9; see BENCHMARKS.md
#     "Prompt tuning (train-prompts, not shipped) and why the micro model does not follow clicks".
efficient-sam2 train-prompts --image-data "$DATA/images_train" --video-data "$DATA/train" --val-data "$DATA/valstd" \
    --val-every 1000 --steps 3000 --lr 1e-3 --warmup 50 --image-batch 2 --image-instances 8 --distill-batch 16 \
    --distill-weight 5 --save-every 250 --out "$RUNS/promptB"

# 12. click seeds (issue 22, shipped): positive clicks are drawn into the mask prompt as disks of radius 12 px
#     (SAM2Config.click_seed_radius; the micro config now has 12), so a click carries its place into the image
#     tokens, which the micro model's decoder could not find from the point token alone (step 11). Two stages of
#     prompt tuning from the stage G weights:
#     a) clicks only (no boxes), no distillation: the decoder learns the seeds; tracking falls (dense J&F 34.9 on
#        the 30 held-out standard videos). Run with --steps 1500 and stopped after step 750 was saved (loss.csv's
#        last row is 750; model.pt is then step 750's; ~13 min on one core while another job ran):
#     (--box-seeds off --single-output token --seed-mask-prompts off: these stages ran before those micro switches
#     existed; step 13 ran before seed_mask_prompts.)
efficient-sam2 train-prompts --image-data "$DATA/images_train" --distill-videos 0 --box-prob 0 --steps 1500 \
    --lr 1e-3 --warmup 50 --image-batch 4 --image-instances 8 --save-every 250 --click-seed-radius 12 \
    --box-seeds off --single-output token --seed-mask-prompts off --out "$RUNS/seeds1" --threads 1
#     b) the full recipe (boxes, correction clicks) with stage G's tracking distilled back (--distill-from: the
#        teacher's decoder calls are recorded, not the start's), 750 steps at a lower rate [~15 min]:
efficient-sam2 train-prompts --checkpoint "$RUNS/seeds1/model.pt" --distill-from "$RUNS/stageG/model.pt" \
    --image-data "$DATA/images_train" --video-data "$DATA/train" --val-data "$DATA/valstd" --val-every 375 \
    --steps 750 --lr 3e-4 --warmup 20 --image-batch 4 --image-instances 8 --distill-batch 16 --distill-weight 5 \
    --save-every 125 --click-seed-radius 12 --box-seeds off --single-output token --seed-mask-prompts off --out "$RUNS/seeds2" --threads 1
#     (shipped until the evening of 2026-12-07; then step 13.)

# 13. stage c (shipped in the evening of 2026-12-07, then step 14): boxes drawn into the seeds (SAM2Config.box_seeds) and
#     one-mask calls on prompts answered by the best multimask output (single_output_from_best), both on for micro
#     by default; train-prompts runs the model in eval mode, so its box and correction rounds now supervise the
#     output inference uses. From stage b's weights, its own tracking distilled, 1500 steps [~32 min on one core
#     beside another job]. Box alone IoU 0.33 / 0.35 / 0.19 -> 0.54 / 0.59 / 0.50, dense J&F on the 30 held-out
#     standard videos 80.1 -> 80.6 (BENCHMARKS.md "Stage c").
efficient-sam2 train-prompts --checkpoint "$RUNS/seeds2/model.pt" --distill-from "$RUNS/seeds2/model.pt" \
    --image-data "$DATA/images_train" --video-data "$DATA/train" --val-data "$DATA/valstd" --val-every 750 \
    --steps 1500 --lr 3e-4 --warmup 20 --image-batch 4 --image-instances 8 --distill-batch 16 --distill-weight 5 \
    --save-every 250 --seed-mask-prompts off --out "$RUNS/stagec" --threads 1
cp "$RUNS/stagec/model.pt" efficient_sam2/weights/sam2.1_hiera_micro.pt
#     then the shortcut again on these weights (step 9's command; the image encoder did not change, the masks that
#     route it did a little).

# 14. stage d (shipped since the night of 2026-12-07): a mask prompt that comes with clicks, the correction round's
#     previous mask, is given to the decoder in the seeds' form (SAM2Config.seed_mask_prompts, on for micro by
#     default: the mask minus disks at negative clicks plus disks at positive ones); the same recipe once more from
#     stage c, its own tracking distilled, sampling seed 1 [~19 min on one core beside other jobs]. Held-out clicks
#     best of 3 / top-ranked 0.45 / 0.39, 0.50 / 0.38, 0.36 / 0.24 -> 0.51 / 0.40, 0.64 / 0.50, 0.38 / 0.25; box
#     alone 0.54 / 0.59 / 0.50 -> 0.57 / 0.65 / 0.54; a correction click 0.39 / 0.25 / 0.08 -> 0.38 / 0.41 / 0.11
#     (stage c with the seeded mask prompts; 0.27 / 0.17 / 0.04 with its logits); dense J&F on the 30 held-out
#     standard videos 80.6 -> 80.3 (BENCHMARKS.md "Stage d").
efficient-sam2 train-prompts --checkpoint "$RUNS/stagec/model.pt" --distill-from "$RUNS/stagec/model.pt" \
    --image-data "$DATA/images_train" --video-data "$DATA/train" --val-data "$DATA/valstd" --val-every 750 \
    --steps 1500 --lr 3e-4 --warmup 20 --image-batch 4 --image-instances 8 --distill-batch 16 --distill-weight 5 \
    --save-every 250 --seed 1 --out "$RUNS/staged" --threads 1
cp "$RUNS/staged/model.pt" efficient_sam2/weights/sam2.1_hiera_micro.pt
#     then the shortcut again (step 9's command, written to "$RUNS/shortcut_d"), and tests/data/paper_golden.npz
#     (tests/data/make_paper_golden.py).
