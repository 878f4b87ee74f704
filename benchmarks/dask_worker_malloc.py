"""Why a Dask worker ran the catalog's search 2x slower than the parent process: glibc malloc thresholds.

One chunk of 16 spectra (after a warm-up chunk of 8) timed in this process (``local``) and on a 1-worker
LocalCluster whose workers get distributed's pre-spawn environ with MALLOC_TRIM_THRESHOLD_=64 KiB
(``default``, distributed's own setting), raised to 1 GiB (``raised``), or no MALLOC_ variable (``none``,
what finetune/catalog.py now uses). Input: the first 24 files written by benchmarks/catalog_throughput.py.

    for m in local none raised default; do OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/dask_worker_malloc.py $m; done
"""
import glob, sys, time
import dask
from dask.distributed import Client, LocalCluster
from speclm.finetune.catalog import CatalogConfig, process_chunk, _predictor

files = sorted(glob.glob("runs/bench_catalog/spectra/*.fits"))[:24]
cfg = CatalogConfig()
job = {"refine": True, "batch_size": cfg.batch_size, "adapter": cfg.adapter, "base": cfg.base, "device": "cpu"}
job["device"] = cfg.device
refs = [str(f) for f in files]

def timed_local():
    process_chunk(refs[:8], job)  # warm: model load, templates
    t0 = time.perf_counter(); process_chunk(refs[8:], job); return time.perf_counter() - t0

def timed_worker(environ):
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                          env={"OMP_NUM_THREADS": "1"}) as cl, Client(cl) as c:
            c.submit(process_chunk, refs[:8], job, pure=False).result()
            t0 = time.perf_counter(); c.submit(process_chunk, refs[8:], job, pure=False).result()
            env = c.run(lambda: {k: v for k, v in __import__("os").environ.items() if k.startswith(("MALLOC", "OMP", "MKL", "OPENBLAS"))})
            return time.perf_counter() - t0, env

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "local":
        print("local", round(timed_local(), 2))
    else:
        base = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}
        environ = {**base, "MALLOC_TRIM_THRESHOLD_": 2**30} if mode == "raised" else (
            {**base, "MALLOC_TRIM_THRESHOLD_": 65536} if mode == "default" else base)
        print(mode, *timed_worker(environ))
