// NumPy's OpenBLAS run on the kernels' own OpenMP threads: one thread pool for the whole training step.
//
// Why. A training step alternates OpenBLAS's GEMMs (the convolutions' matrix products) with these kernels. Each
// library has its own pool of worker threads, and OpenBLAS's workers busy-wait for ~0.1 s after every threaded
// GEMM before they sleep (unless OPENBLAS_THREAD_TIMEOUT was set before NumPy loaded OpenBLAS, which a script that
// imports NumPy first cannot do): the kernel that follows then shares the cores with a spinning thread, and the
// DCGAN step took 1.6x as long. OpenBLAS (0.3.27 and later) lets a program replace its threading with a callback
// (openblas_set_threads_callback_function): OpenBLAS splits a call into jobs and hands them over, and
// run_blas_jobs runs them on the OpenMP team that the kernels use, whose idle threads sleep (kernels/cpu.py sets
// a passive wait policy). OpenBLAS's own workers then never get work again and sleep for good.
//
// Two rules of OpenBLAS's jobs shape the callback:
//   - the jobs of one call wait for each other (a threaded GEMM's jobs share packed panels), so all of them must
//     run at the same time: a team of exactly `numjobs` threads, or, where OpenMP cannot promise one (inside a
//     parallel region, dynamic teams, a thread limit), one std::thread per job;
//   - job i uses the scratch buffer of OpenBLAS's thread i, so two calls from two Python threads must not run at
//     once: a mutex serialises them (each one still gets every thread).
#include <atomic>
#include <mutex>
#include <thread>

#include "fastgan.h"

namespace fastgan {

namespace {

using DoJob = void (*)(int thread_num, void* jobdata, int dojob_data);

std::mutex one_call_at_a_time;
std::atomic<long long> calls_run{0};

bool team_is_guaranteed(int numjobs) {
#ifdef _OPENMP
    return !omp_in_parallel() && !omp_get_dynamic() && omp_get_thread_limit() >= numjobs;
#else
    (void)numjobs;
    return false;
#endif
}

// The callback's signature is OpenBLAS's openblas_threads_callback (cblas.h); `sync` is always 1 there.
void run_blas_jobs(int /*sync*/, DoJob dojob, int numjobs, std::size_t jobdata_elsize, void* jobdata,
                   int dojob_data) {
    std::lock_guard<std::mutex> lock(one_call_at_a_time);
    auto job = [&](int i) { dojob(i, static_cast<char*>(jobdata) + i * jobdata_elsize, dojob_data); };
    if (team_is_guaranteed(numjobs)) {
#ifdef _OPENMP
#pragma omp parallel num_threads(numjobs)
        job(omp_get_thread_num());
#endif
    } else {
        std::vector<std::thread> helpers;
        for (int i = 1; i < numjobs; ++i) helpers.emplace_back(job, i);
        job(0);
        for (auto& t : helpers) t.join();
    }
    calls_run.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

void register_blas_threads(py::module_& m) {
    m.def("blas_threads_callback", [] { return reinterpret_cast<std::uintptr_t>(&run_blas_jobs); },
          "The address of the callback to hand to OpenBLAS's openblas_set_threads_callback_function.");
    m.def("blas_calls_run", [] { return calls_run.load(); },
          "How many threaded OpenBLAS calls the callback has run so far (a test's evidence that it is in use).");
}

}  // namespace fastgan
