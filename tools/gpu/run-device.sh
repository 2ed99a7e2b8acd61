#!/usr/bin/env bash
# WebGPU (Dawn) vs wasm U-Net training bench on the accelerator machine (docs/gpu.md).
#
#   bash tools/gpu/run-device.sh            # in the repo root, with tools/gpu/dist carried
#
# Needs only tools/gpu/dist (built by `cd tools/gpu && npm ci && npm run build`) and bash,
# coreutils, gzip or python3: the bundle brings Node, dawn.node, the tfjs wasm binaries, a
# Vulkan loader and a glibc for hosts older than dawn.node needs. Every step has a timeout;
# when WebGPU cannot start, the log says why and the wasm comparison still runs.
#
# Writes $OUT/gpu.log (everything printed), $OUT/gpu-result.json (the bench's results) and
# $OUT/BUILD.json (what was in the bundle). OUT defaults to ./gpu-out.
# Environment: BENCH_BUDGET_S (default 240: seconds for the bench's variants), BENCH_ONLY
# (comma-separated variant ids), BENCH_QUICK=1 (2 timed steps each: the CPU smoke test),
# TWINFED_DAWN_OPTIONS / TWINFED_WEBGPU_COMPAT (see src/bench-webgpu.ts; skip the probe matrix),
# FORCE_BUNDLED_GLIBC=1 (run Node through the bundled glibc even where the host's would do: a test).
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIST=$HERE/dist
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
LOG=$OUT/gpu.log
BUDGET=${BENCH_BUDGET_S:-240}

LDCONFIG=$(command -v ldconfig || echo /sbin/ldconfig)
if command -v timeout >/dev/null 2>&1; then
  T() { timeout -k 5 "$@"; }
else
  T() { shift; "$@"; }
fi

section() { printf '\n===== %s (%ss) =====\n' "$1" "$SECONDS"; }

# Unpack SRC (.gz or .xz) to DST with whatever exists: gzip/xz, python3, or a Node (gzip only).
gunz() {
  case "$1" in
  *.xz)
    xz -dc "$1" >"$2" 2>/dev/null && return 0
    command -v python3 >/dev/null 2>&1 && python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2" && return 0
    return 1
    ;;
  esac
  gzip -dc "$1" >"$2" 2>/dev/null && return 0
  command -v python3 >/dev/null 2>&1 && python3 -c 'import gzip,shutil,sys; shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2" && return 0
  [ -n "${NODE_CMD:-}" ] && "${NODE_CMD[@]}" -e 'const z=require("zlib"),f=require("fs");f.writeFileSync(process.argv[2],z.gunzipSync(f.readFileSync(process.argv[1])))' "$1" "$2" && return 0
  return 1
}

main() {
  section "bundle"
  date -u +%FT%TZ
  if [ ! -f "$DIST/bench-webgpu.mjs" ]; then
    echo "FATAL: $DIST/bench-webgpu.mjs missing: carry tools/gpu/dist (build it with: cd tools/gpu && npm ci && npm run build)"
    return 1
  fi
  cp "$DIST/BUILD.json" "$OUT/" 2>/dev/null
  ls -la "$DIST"

  section "machine"
  T 10 uname -a
  T 10 cat /etc/os-release 2>/dev/null | head -4
  T 10 ldd --version 2>&1 | head -1
  echo "cores: $(nproc 2>/dev/null)"
  T 10 free -g 2>/dev/null | head -2
  T 30 nvidia-smi || echo "nvidia-smi failed or missing"
  T 30 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>/dev/null
  env | grep -E '^(NVIDIA_|CUDA_|VK_|LD_LIBRARY_PATH|__EGL|EGL_)' | sort
  ls -la /dev/nvidia* /dev/dri 2>&1 | head -20

  section "Vulkan / EGL drivers"
  for d in /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/share/vulkan/icd.d /etc/glvnd/egl_vendor.d /usr/share/glvnd/egl_vendor.d; do
    [ -d "$d" ] || continue
    for f in "$d"/*.json; do [ -f "$f" ] && echo "$f: $(tr -d '\n ' <"$f" | head -c 300)"; done
  done
  T 10 "$LDCONFIG" -p 2>/dev/null | grep -Ei 'libvulkan|nvidia|libEGL|libGLX' | head -40
  if command -v vulkaninfo >/dev/null 2>&1; then T 30 vulkaninfo --summary 2>&1 | tail -25; fi
  echo "system node: $(command -v node || echo none) $(node --version 2>/dev/null)"

  section "unpack"
  W=""
  for base in "${TMPDIR:-/tmp}" "$HERE" "$PWD"; do
    cand=$(mktemp -d "$base/twinfed-gpu.XXXXXX" 2>/dev/null) || continue
    printf '#!/bin/sh\nexit 0\n' >"$cand/x" && chmod +x "$cand/x" && "$cand/x" && W=$cand && break
    rm -rf "$cand" # noexec mount
  done
  if [ -z "$W" ]; then
    echo "FATAL: no writable folder that allows executables"
    return 1
  fi
  cp -r "$DIST/." "$W/"
  unpack_glibc() {
    [ -d "$W/glibc-lib" ] && return 0
    mkdir -p "$W/glibc-lib"
    for f in "$W"/glibc/*.gz; do gunz "$f" "$W/glibc-lib/$(basename "$f" .gz)"; done
    chmod +x "$W/glibc-lib/ld-linux-x86-64.so.2"
  }
  NODE_CMD=()
  if [ -f "$W/node.xz" ] && gunz "$W/node.xz" "$W/node" && chmod +x "$W/node"; then
    if T 20 "$W/node" --version; then
      NODE_CMD=("$W/node")
    else
      echo "the bundled Node does not start on this host's libraries; trying it through the bundled glibc 2.36"
      unpack_glibc
      T 20 "$W/glibc-lib/ld-linux-x86-64.so.2" --library-path "$W/glibc-lib" "$W/node" --version && NODE_CMD=("$W/glibc-lib/ld-linux-x86-64.so.2" --library-path "$W/glibc-lib" "$W/node")
    fi
  fi
  if [ ${#NODE_CMD[@]} -eq 0 ]; then
    if command -v node >/dev/null 2>&1 && [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -ge 20 ]; then
      NODE_CMD=("$(command -v node)")
      echo "bundled Node unusable; using the system's ${NODE_CMD[0]}"
    else
      echo "FATAL: no usable Node (the bundled one did not start, no system Node >= 20)"
      return 1
    fi
  fi
  NODE_BIN=${NODE_CMD[-1]}
  gunz "$W/dawn.node.xz" "$W/dawn.node" || echo "could not unpack dawn.node"
  echo "work dir $W; node $("${NODE_CMD[@]}" --version) via ${NODE_CMD[*]}"

  section "dawn.node load"
  load_dawn() { T 30 "$@" -e 'try { const d = require(process.argv[1]); console.log("dawn.node loads; exports:", Object.keys(d).join(", ")); } catch (e) { console.log("dawn.node does not load:", e.message); process.exit(1); }' "$W/dawn.node"; }
  DAWN_LOAD=$(load_dawn "${NODE_CMD[@]}" 2>&1)
  echo "$DAWN_LOAD"
  if [ "${NODE_CMD[0]}" = "$NODE_BIN" ] && { echo "$DAWN_LOAD" | grep -q 'GLIBC' || [ "${FORCE_BUNDLED_GLIBC:-0}" = 1 ]; }; then
    [ "${FORCE_BUNDLED_GLIBC:-0}" = 1 ] && echo "FORCE_BUNDLED_GLIBC=1:" || echo "the host's glibc/libstdc++ is older than dawn.node needs (glibc 2.34, GLIBCXX_3.4.30):"
    echo "running Node through the bundled glibc 2.36"
    unpack_glibc
    NODE_CMD=("$W/glibc-lib/ld-linux-x86-64.so.2" --library-path "$W/glibc-lib" "$NODE_BIN")
    load_dawn "${NODE_CMD[@]}" 2>&1
  fi
  TWINFED_NODE_CMD=$(printf '%s\n' "${NODE_CMD[@]}" | "${NODE_CMD[@]}" -e 'console.log(JSON.stringify(require("fs").readFileSync(0,"utf8").trim().split("\n")))')
  export TWINFED_NODE_CMD

  section "Vulkan loader and NVIDIA driver for Dawn"
  if "$LDCONFIG" -p 2>/dev/null | grep -q 'libvulkan.so.1 ' || ls /usr/lib/x86_64-linux-gnu/libvulkan.so.1 /usr/lib64/libvulkan.so.1 /usr/lib/libvulkan.so.1 >/dev/null 2>&1; then
    echo "system Vulkan loader present"
  else
    mkdir -p "$W/vk"
    gunz "$W/vklib/libvulkan.so.1.gz" "$W/vk/libvulkan.so.1" && export LD_LIBRARY_PATH="$W/vk${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "no system Vulkan loader: using the bundled one (Debian libvulkan1 1.3.239) via LD_LIBRARY_PATH"
  fi
  have_icd=$(ls /etc/vulkan/icd.d/*nvidia* /usr/share/vulkan/icd.d/*nvidia* /usr/local/share/vulkan/icd.d/*nvidia* 2>/dev/null | head -1)
  if [ -n "$have_icd" ] || [ -n "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ]; then
    echo "NVIDIA Vulkan ICD: ${have_icd:-from VK_ICD_FILENAMES/VK_DRIVER_FILES}"
  else
    icds=""
    for lib in libGLX_nvidia.so.0 libEGL_nvidia.so.0; do
      p=$("$LDCONFIG" -p 2>/dev/null | grep -m1 "$lib " | sed 's/.*=> //')
      [ -z "$p" ] && p=$(find /usr/lib /usr/lib64 /usr/local/lib /usr/lib/x86_64-linux-gnu -maxdepth 2 -name "$lib" 2>/dev/null | head -1)
      [ -z "$p" ] && continue
      mkdir -p "$W/icd"
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$p" >"$W/icd/${lib%%.so*}.json"
      icds="${icds:+$icds:}$W/icd/${lib%%.so*}.json"
    done
    if [ -n "$icds" ]; then
      export VK_ICD_FILENAMES=$icds VK_DRIVER_FILES=$icds
      echo "no NVIDIA ICD .json installed, but the driver's Vulkan library is here: wrote $icds"
    else
      echo "no NVIDIA Vulkan driver (no nvidia_icd.json, no libGLX_nvidia.so.0 / libEGL_nvidia.so.0): Dawn cannot reach this GPU through Vulkan (a container needs NVIDIA_DRIVER_CAPABILITIES with graphics or all)"
    fi
  fi
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$W}

  section "WebGPU probe"
  probe() { T 45 "${NODE_CMD[@]}" "$W/bench-webgpu.mjs" --probe 2>&1 | tail -15; }
  if [ -n "${TWINFED_DAWN_OPTIONS:-}${TWINFED_WEBGPU_COMPAT:-}" ]; then
    echo "Dawn options from the environment: [${TWINFED_DAWN_OPTIONS:-}] compat=${TWINFED_WEBGPU_COMPAT:-0}"
  else
    P=$(probe)
    echo "default (Vulkan): $P"
    if ! echo "$P" | grep -q '"available":true'; then
      echo "--- adapters Dawn can see (adapter=? lists them):"
      TWINFED_DAWN_OPTIONS='adapter=?' probe
      for plat in device surfaceless; do
        P2=$(EGL_PLATFORM=$plat TWINFED_WEBGPU_COMPAT=1 TWINFED_DAWN_OPTIONS='backend=opengles' probe)
        echo "--- OpenGL ES (compatibility mode), EGL_PLATFORM=$plat: $P2"
        if echo "$P2" | grep -q '"available":true' && ! echo "$P2" | grep -qi 'llvmpipe\|softpipe\|swiftshader'; then
          echo "using Dawn's OpenGL ES backend on EGL_PLATFORM=$plat (compatibility mode: fewer features than Vulkan, the numbers say so)"
          export EGL_PLATFORM=$plat TWINFED_WEBGPU_COMPAT=1 TWINFED_DAWN_OPTIONS='backend=opengles'
          break
        fi
      done
    fi
  fi

  section "bench (budget ${BUDGET}s)"
  args=(--result "$OUT/gpu-result.json" --budget-s "$BUDGET")
  [ -n "${BENCH_ONLY:-}" ] && args+=(--only "$BENCH_ONLY")
  [ "${BENCH_QUICK:-0}" = 1 ] && args+=(--quick)
  T $((BUDGET + 60)) "${NODE_CMD[@]}" "$W/bench-webgpu.mjs" "${args[@]}"
  echo "bench exit status $?"
  rm -rf "$W"
  section "done"
}

main 2>&1 | tee "$LOG"
echo "log: $LOG; results: $OUT/gpu-result.json"
exit 0
