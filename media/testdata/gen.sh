#!/bin/sh
# Regenerates the test clip in several codecs with Debian's ffmpeg (5.1).
# A synthetic 4 s, 30 fps, 320x240 picture (testsrc2: moving gradient,
# counter and rotating element) and a 440 Hz sine tone. Every video file
# has a keyframe every 30 frames (1 s) so a viewer joining at any moment
# needs at most a second (or a PLI) before it can decode.
set -eu
cd "$(dirname "$0")"

SRC="testsrc2=size=320x240:rate=30:duration=4"
COMMON="-hide_banner -loglevel error -y -f lavfi -i $SRC -an -pix_fmt yuv420p"

# VP8 in IVF, ~400 kbit/s, keyframe every 30 frames.
ffmpeg $COMMON -c:v libvpx -b:v 400k -minrate 300k -maxrate 500k -bufsize 400k \
	-g 30 -keyint_min 30 -deadline realtime -cpu-used 8 -auto-alt-ref 0 -lag-in-frames 0 \
	-f ivf clip.ivf

# H.264 Annex-B: constrained baseline (no B-frames, CAVLC), level 3.1,
# IDR every 30 frames, SPS/PPS repeated before every IDR (repeat-headers)
# so every keyframe can be decoded on its own; one slice per frame so
# every access unit is a single VCL NAL (simple to packetize and count).
ffmpeg $COMMON -c:v libx264 -profile:v baseline -level 3.1 -b:v 400k -maxrate 500k -bufsize 400k \
	-g 30 -keyint_min 30 -sc_threshold 0 -bf 0 -tune zerolatency \
	-x264-params repeat-headers=1:sliced-threads=0:slices=1 \
	-f h264 clip.h264

# Opus in Ogg, 48 kHz mono, 20 ms frames, one packet per Ogg page
# (page_duration 20000 us) so oggreader hands out one frame per page.
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=4" \
	-c:a libopus -b:a 48k -ar 48000 -ac 1 -frame_duration 20 -application lowdelay -page_duration 20000 \
	clip.ogg

# VP9 in IVF (profile 0), same rate and GOP.
ffmpeg $COMMON -c:v libvpx-vp9 -b:v 400k -minrate 300k -maxrate 500k -bufsize 400k \
	-g 30 -keyint_min 30 -deadline realtime -cpu-used 8 -row-mt 1 -lag-in-frames 0 -auto-alt-ref 0 \
	-f ivf clip_vp9.ivf

# AV1 in IVF (libaom, realtime usage), same rate and GOP.
ffmpeg $COMMON -c:v libaom-av1 -usage realtime -cpu-used 8 -b:v 400k -maxrate 500k -bufsize 400k \
	-g 30 -keyint_min 30 -lag-in-frames 0 \
	-f ivf clip_av1.ivf
