"""
_capi.py: the ctypes mirror of include/cge.h, and where libcge.so is found.

Key design decision: plain ctypes over the public C API, no compiled extension, so the package
is nothing but these files plus libcge.so. Every struct below mirrors its C declaration field by
field, in order; the tests compare each sizeof and offset with what the C compiler computes from
cge.h (tests/unit/test_runtime_python.c), so a change to the header that is not made here fails
the suite instead of corrupting memory. Functions are declared with argtypes/restype so a wrong
argument is a Python TypeError, never a bad pointer. Functions are bound through ctypes.CDLL,
which releases the GIL for the whole foreign call: Python threads embed in parallel.

The library is loaded lazily, on the first use (lib()), so `import cge` always works and a
missing library is a clear cge.LibraryNotFoundError naming every place that was tried.
"""
import ctypes
import os
import threading
from ctypes import (POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int32,
                    c_int64, c_size_t, c_uint, c_uint32, c_uint64, c_void_p)

# ==== Constants of cge.h ======================================================================
CGE_N_SLOTS = 12
CGE_FUSED_DIM = 1536
CGE_N_EXPERTS = 8
CGE_TOP_K = 2
CGE_CONFIG_PATH_MAX = 1024

MOD_TEXT, MOD_CODE, MOD_IMAGE, MOD_AUDIO = 1, 2, 4, 8
MODALITY_NAMES = ((MOD_TEXT, "text"), (MOD_CODE, "code"), (MOD_IMAGE, "image"),
                  (MOD_AUDIO, "audio"))

ROLE_DOCUMENT, ROLE_QUERY = 0, 1

# enum cge_dtype
DTYPES = {"f32": 0, "float32": 0, "f16": 1, "float16": 1, "bf16": 2, "bfloat16": 2,
          "int8": 3, "i8": 3}
# enum cge_pooling (the override values cge_model_params accepts)
POOLINGS = {None: 0, "none": 0, "cls": 1, "mean": 2, "max": 3, "mean_sqrt_len": 4,
            "last": 5, "lasttoken": 5, "mean_no_instr": 6, "projection": 7, "audio_mean": 8}
# enum cge_slot_state, enum cge_slot_load_state
SLOT_STATES = ("absent", "skipped", "ok", "failed")
LOAD_STATES = ("absent", "unloaded", "loading", "ready", "failed")


# ==== Structs (field for field as in cge.h) ==================================================
class cge_slot_info(Structure):
    _fields_ = [("slot", c_int), ("name", c_char_p), ("hf_id", c_char_p), ("family", c_char_p),
                ("dim", c_int), ("max_tokens", c_int), ("modalities", c_uint),
                ("pooling", c_int), ("normalize", c_int), ("dtype", c_int)]


class cge_input(Structure):
    # Text pointers are c_char_p: assigning a bytes object points at its buffer (no copy) and the
    # struct keeps the bytes alive. Media bytes are c_void_p; the caller keeps them alive.
    _fields_ = [("text", c_char_p), ("text_len", c_size_t), ("is_code", c_int),
                ("language", c_char_p), ("role", c_int), ("instruction", c_char_p),
                ("ids", POINTER(c_int32)), ("n_ids", c_int64),
                ("image_path", c_char_p), ("image_data", c_void_p), ("image_len", c_size_t),
                ("audio_path", c_char_p), ("audio_data", c_void_p), ("audio_len", c_size_t)]


class cge_model_params(Structure):
    _fields_ = [("dtype", c_int), ("pooling", c_int), ("no_truncate", c_int),
                ("max_seq_len", c_int64),
                ("backend", c_char_p)]  # "cpu" (NULL), "cuda", "cuda:N", "auto"


class cge_embed_info(Structure):
    _fields_ = [("status", c_int), ("truncated", c_int), ("n_tokens", c_int64),
                ("errmsg", c_char * 256)]


class cge_engine_params(Structure):
    _fields_ = [("n_threads", c_int), ("cache", c_int), ("no_truncate", c_int),
                ("slot_timeout_ms", c_int64), ("preload", c_int),
                ("batching", c_int), ("max_batch_size", c_int), ("max_batch_tokens", c_int64),
                ("max_wait_ms", c_int), ("max_queue", c_int64), ("n_workers", c_int),
                ("memory_budget_bytes", c_int64), ("max_concurrent_loads", c_int),
                ("swap_timeout_ms", c_int64),
                ("redis_url", c_char_p),  # the shared cache tier (Redis); NULL: none
                ("backend", c_char_p)]  # where the slots' models run; NULL: the cpu


class cge_slot_result(Structure):
    _fields_ = [("state", c_int), ("status", c_int), ("dim", c_int),
                ("vector", POINTER(c_float)), ("latency_us", c_int64), ("n_tokens", c_int64),
                ("truncated", c_int), ("cached", c_int), ("version", c_uint64),
                ("errmsg", c_char * 200)]


class cge_result(Structure):
    _fields_ = [("status", c_int), ("errmsg", c_char * 256), ("dim", c_int),
                ("embedding", POINTER(c_float)), ("n_experts", c_int),
                ("expert_weights", POINTER(c_float)), ("top_k", c_int),
                ("selected", POINTER(c_int)), ("present", c_uint32),
                ("slots", cge_slot_result * CGE_N_SLOTS), ("cached", c_int),
                ("latency_us", c_int64), ("n_tokens", c_int64)]


class cge_embed_options(Structure):
    _fields_ = [("slots", c_uint32), ("no_fusion", c_int), ("no_cache", c_int),
                ("timeout_ms", c_int64)]


class cge_slot_stats(Structure):
    _fields_ = [("state", c_int), ("path", c_char * CGE_CONFIG_PATH_MAX),
                ("path2", c_char * CGE_CONFIG_PATH_MAX), ("dtype", c_int), ("dim", c_int),
                ("version", c_uint64), ("resident_bytes", c_int64), ("load_ms", c_int64),
                ("requests", c_uint64), ("failures", c_uint64), ("mean_latency_ms", c_double),
                ("p95_latency_ms", c_double), ("queue_depth", c_int64),
                ("errmsg", c_char * 200), ("batches", c_uint64), ("mean_batch", c_double),
                ("padding", c_double), ("max_batch", c_int64)]


class cge_engine_stats(Structure):
    _fields_ = [("requests", c_uint64), ("inputs", c_uint64), ("failures", c_uint64),
                ("cache_hits", c_uint64), ("cache_misses", c_uint64),
                ("cache_entries", c_uint64), ("cache_hit_rate", c_double),
                ("in_flight", c_int64), ("slots", cge_slot_stats * CGE_N_SLOTS),
                ("redis_hits", c_uint64), ("redis_misses", c_uint64), ("redis_corrupt", c_uint64),
                ("redis_errors", c_uint64), ("redis_puts", c_uint64)]


# The structs the layout test checks against the C compiler.
STRUCTS = {cls.__name__: cls for cls in (
    cge_slot_info, cge_input, cge_model_params, cge_embed_info, cge_engine_params,
    cge_slot_result, cge_result, cge_embed_options, cge_slot_stats, cge_engine_stats)}

# Opaque handles.
engine_p = c_void_p
model_p = c_void_p
provider_p = c_void_p

# ==== Functions ================================================================================
# name: (restype, argtypes). Only what cge.h declares.
_PROTOS = {
    "cge_status_str": (c_char_p, [c_int]),
    "cge_errmsg": (c_char_p, []),
    "cge_slot_get": (POINTER(cge_slot_info), [c_int]),
    "cge_total_dim": (c_int, []),
    "cge_set_threads": (None, [c_int]),
    "cge_get_threads": (c_int, []),
    "cge_input_modality": (c_uint, [POINTER(cge_input)]),
    # one model folder
    "cge_model_default_params": (cge_model_params, []),
    "cge_model_load": (c_int, [c_char_p, POINTER(cge_model_params), POINTER(model_p)]),
    "cge_model_free": (None, [model_p]),
    "cge_model_dim": (c_int, [model_p]),
    "cge_model_modalities": (c_uint, [model_p]),
    "cge_model_family": (c_char_p, [model_p]),
    "cge_model_max_seq_len": (c_int64, [model_p]),
    "cge_model_embed": (c_int, [model_p, POINTER(cge_input), c_int64, c_void_p,
                                POINTER(cge_embed_info)]),
    "cge_model_tokenize": (c_int64, [model_p, c_char_p, c_size_t, POINTER(c_int32), c_int64]),
    # the engine
    "cge_engine_default_params": (cge_engine_params, []),
    "cge_engine_open": (c_int, [c_char_p, POINTER(cge_engine_params), POINTER(engine_p)]),
    "cge_engine_close": (None, [engine_p]),
    "cge_demo_ensemble_path": (c_char_p, []),
    "cge_engine_is_demo": (c_int, [engine_p]),
    "cge_result_deinit": (None, [POINTER(cge_result)]),
    "cge_engine_embed": (c_int, [engine_p, POINTER(cge_input), c_size_t,
                                 POINTER(cge_embed_options), POINTER(cge_result)]),
    "cge_engine_name": (c_char_p, [engine_p]),
    "cge_engine_dim": (c_int, [engine_p]),
    "cge_engine_slot_dim": (c_int, [engine_p, c_int]),
    "cge_engine_slot_max_tokens": (c_int64, [engine_p, c_int]),
    "cge_engine_slot_modalities": (c_uint, [engine_p, c_int]),
    "cge_engine_tokenize": (c_int64, [engine_p, c_int, c_char_p, c_size_t, c_int,
                                      POINTER(c_int32), c_int64]),
    "cge_engine_health": (c_int, [engine_p]),
    "cge_engine_get_stats": (c_int, [engine_p, POINTER(cge_engine_stats)]),
    "cge_engine_swap": (c_int, [engine_p, c_int, c_char_p, POINTER(c_uint64)]),
    "cge_engine_unload": (c_int, [engine_p, c_int]),
    # the provider
    "cge_provider_open": (c_int, [c_char_p, POINTER(provider_p)]),
    "cge_provider_embed": (c_int, [provider_p, c_char_p, c_void_p]),
    "cge_provider_embed_batch": (c_int, [provider_p, POINTER(c_char_p), c_size_t, c_void_p]),
    "cge_provider_dimension": (c_size_t, [provider_p]),
    "cge_provider_model_name": (c_char_p, [provider_p]),
    "cge_provider_max_tokens": (c_size_t, [provider_p]),
    "cge_provider_close": (None, [provider_p]),
}


# ==== Finding and loading libcge.so ============================================================
class LibraryNotFoundError(ImportError):
    """libcge.so could not be found or loaded (see the message for every place tried)."""


_LIBNAME = "libcge.so"
_lock = threading.Lock()
_lib = None
_lib_path = None


def _candidates():
    """(path, from_env) in the order they are tried."""
    env = os.environ.get("CGE_LIBRARY")
    if env:
        # An explicit choice is the only one tried: falling back would hide a typo.
        p = os.path.join(env, _LIBNAME) if os.path.isdir(env) else env
        return [(p, True)]
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))  # python/cge -> repository root
    return [(os.path.join(here, _LIBNAME), False),           # installed next to the package
            (os.path.join(repo, "build", _LIBNAME), False),  # the source tree's build folder
            (_LIBNAME, False)]                               # the loader's search path


class _Lib:
    """The bound functions, as attributes. A function the loaded library lacks (an older build)
    raises LibraryNotFoundError naming it when called, instead of failing at load time."""


def _bind(dll, path):
    ns = _Lib()
    ns.dll = dll
    for name, (res, args) in _PROTOS.items():
        try:
            fn = getattr(dll, name)
        except AttributeError:
            def fn(*_a, _name=name):
                raise LibraryNotFoundError("cge: %s has no %s (a library older than this "
                                           "binding?)" % (path, _name))
        else:
            fn.restype = res
            fn.argtypes = args
        setattr(ns, name, fn)
    return ns


def _load():
    tried = []
    for path, from_env in _candidates():
        where = path + (" from CGE_LIBRARY" if from_env else "")
        if os.sep in path and not os.path.exists(path):
            tried.append("%s (no such file)" % where)
            continue
        try:
            dll = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (where, e))
            continue
        if not hasattr(dll, "cge_errmsg"):
            tried.append("%s (not a cge library: no cge_errmsg)" % where)
            continue
        return _bind(dll, path), (os.path.abspath(path) if os.sep in path else path)
    hint = ("set CGE_LIBRARY to the path of libcge.so, or build it "
            "(`make` in the cge source tree puts it in build/)")
    raise LibraryNotFoundError("cge: cannot load libcge.so; tried: %s; %s"
                               % ("; ".join(tried), hint))


def lib():
    """The loaded library (loads it on first use)."""
    global _lib, _lib_path
    if _lib is None:
        with _lock:
            if _lib is None:
                dll, path = _load()
                _lib_path = path
                _lib = dll
    return _lib


def library_path():
    """Where libcge.so was loaded from (loads it)."""
    lib()
    return _lib_path
