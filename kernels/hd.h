// ATTNRES_HD marks a function that both backends run: __host__ __device__
// under nvcc, a plain function elsewhere (DESIGN §7, single-source kernels).
#pragma once

#ifdef __CUDACC__
#define ATTNRES_HD __host__ __device__
#else
#define ATTNRES_HD
#endif
