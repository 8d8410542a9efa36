// Grouping of an index vector into CSR form.

#include <cstdint>
#include <cstring>
#include <vector>

extern "C" {

// Counting sort of an index vector into CSR: ptr [S + 1] and a stable perm [E].
// Returns 0, or 1 if an index value lies outside [0, S).
int gnpool_csr_from_index(const int64_t* index, int64_t E, int64_t S, int64_t* ptr,
                          int64_t* perm) {
  std::memset(ptr, 0, sizeof(int64_t) * (S + 1));
  for (int64_t i = 0; i < E; ++i) {
    const int64_t j = index[i];
    if (j < 0 || j >= S) return 1;
    ++ptr[j + 1];
  }
  for (int64_t s = 0; s < S; ++s) ptr[s + 1] += ptr[s];
  std::vector<int64_t> next(ptr, ptr + S);
  for (int64_t i = 0; i < E; ++i) perm[next[index[i]]++] = i;
  return 0;
}

// Whether ptr [S + 1] describes E elements, as the kernels read it without bounds checks:
// 0 when ptr[0] == 0, ptr[S] == E and no offset is below the one before; else 1, 2 or 3
// for the first of these that fails.
int gnpool_check_ptr(const int64_t* ptr, int64_t S, int64_t E) {
  if (ptr[0] != 0) return 1;
  if (ptr[S] != E) return 2;
  for (int64_t s = 0; s < S; ++s) {
    if (ptr[s + 1] < ptr[s]) return 3;
  }
  return 0;
}

}  // extern "C"
