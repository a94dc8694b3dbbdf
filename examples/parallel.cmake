# examples/parallel.cmake - the data-parallel example trainers (docs/DISTRIBUTED.md).
#
#   genlm_train_mpi   (train_mpi)   CPU data parallelism over MPI       needs MPI
#   genlm_train_nccl  (train_nccl)  gradients all-reduced over NCCL     needs MPI + CUDA toolkit + NCCL
#
# Included from tests/mpi/CMakeLists.txt (and, if the lead adds `include(parallel.cmake)` to
# examples/CMakeLists.txt, from there; the targets are defined once). Missing MPI / CUDA / NCCL
# skips the corresponding target with a message; nothing here is required for a CPU-only build.
# Sets GENLM_HAVE_TRAIN_MPI / GENLM_HAVE_TRAIN_NCCL for the caller.
include_guard(GLOBAL)

set(GENLM_HAVE_TRAIN_MPI OFF)
set(GENLM_HAVE_TRAIN_NCCL OFF)

find_package(MPI COMPONENTS CXX QUIET)
if(NOT MPI_CXX_FOUND)
  message(STATUS "genlm: MPI not found (apt-get install libopenmpi-dev openmpi-bin): skipping train_mpi / train_nccl")
  return()
endif()

if(NOT TARGET CLI11::CLI11)
  find_package(CLI11 QUIET CONFIG)
  if(NOT CLI11_FOUND)
    find_path(GENLM_CLI11_INCLUDE CLI/CLI.hpp)
    if(NOT GENLM_CLI11_INCLUDE)
      message(STATUS "genlm: CLI11 not found (apt-get install libcli11-dev): skipping train_mpi / train_nccl")
      return()
    endif()
    add_library(CLI11::CLI11 INTERFACE IMPORTED)
    target_include_directories(CLI11::CLI11 INTERFACE ${GENLM_CLI11_INCLUDE})
  endif()
endif()

set(_genlm_parallel_dir ${CMAKE_CURRENT_LIST_DIR})

add_executable(genlm_train_mpi ${_genlm_parallel_dir}/train_mpi.cpp)
set_target_properties(genlm_train_mpi PROPERTIES OUTPUT_NAME train_mpi)
target_link_libraries(genlm_train_mpi PRIVATE genlm::genlm CLI11::CLI11 MPI::MPI_CXX)
target_compile_options(genlm_train_mpi PRIVATE -Wall -Wextra)
set(GENLM_HAVE_TRAIN_MPI ON)

# NCCL: compiled with the host C++ compiler against cuda_runtime_api.h / nccl.h (GENLM_WITH_NCCL),
# linked with CUDA::cudart and libnccl. No GPU is needed to build it.
find_package(CUDAToolkit QUIET)
if(CUDAToolkit_FOUND)
  find_path(GENLM_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ${CUDAToolkit_LIBRARY_ROOT}/include
            PATH_SUFFIXES include)
  find_library(GENLM_NCCL_LIBRARY NAMES nccl
               HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT} ${CUDAToolkit_TARGET_DIR}
               PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)
endif()
if(CUDAToolkit_FOUND AND GENLM_NCCL_INCLUDE_DIR AND GENLM_NCCL_LIBRARY)
  message(STATUS "genlm: building train_nccl (CUDA ${CUDAToolkit_VERSION}, ${GENLM_NCCL_LIBRARY})")
  add_executable(genlm_train_nccl ${_genlm_parallel_dir}/train_nccl.cpp)
  set_target_properties(genlm_train_nccl PROPERTIES OUTPUT_NAME train_nccl)
  target_compile_definitions(genlm_train_nccl PRIVATE GENLM_WITH_NCCL)
  target_include_directories(genlm_train_nccl SYSTEM PRIVATE ${GENLM_NCCL_INCLUDE_DIR})
  target_link_libraries(genlm_train_nccl PRIVATE genlm::genlm CLI11::CLI11 MPI::MPI_CXX CUDA::cudart
                        ${GENLM_NCCL_LIBRARY})
  target_compile_options(genlm_train_nccl PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
  if(GENLM_HAVE_CUDA)
    # compiled by nvcc: replicas can compute on their GPU (--backend cuda)
    set_source_files_properties(${_genlm_parallel_dir}/train_nccl.cpp TARGET_DIRECTORY genlm_train_nccl
                                PROPERTIES LANGUAGE CUDA)
    target_link_libraries(genlm_train_nccl PRIVATE genlm::cuda)
  endif()
  set(GENLM_HAVE_TRAIN_NCCL ON)
else()
  message(STATUS "genlm: CUDA toolkit and/or NCCL not found: skipping train_nccl")
endif()
