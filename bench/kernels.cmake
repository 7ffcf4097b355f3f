# Kernel microbenchmarks: one binary per kernel family (bench/kernel_bench.h: the common flags
# --repeats --warmups --json, timing, one JSON line per measurement), each checked against the CPU
# reference before it is timed.
execute_process(COMMAND git rev-parse --short HEAD WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                OUTPUT_VARIABLE NNR_BENCH_GIT_HASH OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
function(nnr_kernel_bench name)
  add_executable(${name} ${CMAKE_CURRENT_LIST_DIR}/${name}.cpp)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE nnr_engine_ops nnr_engine_optim CLI11::CLI11 nlohmann_json::nlohmann_json)
  target_compile_definitions(${name} PRIVATE NNR_GIT_HASH="${NNR_BENCH_GIT_HASH}")
  if(NNR_HAVE_CUDA)
    target_link_libraries(${name} PRIVATE nnr_kernels)
    target_compile_definitions(${name} PRIVATE NNR_BENCH_CUDA=1)
  endif()
endfunction()
# Through the backend interface: the CPU reference in every build, the CUDA launchers as well in
# CUDA builds when a GPU is usable (--device cpu|cuda|all).
foreach(name bench_gemm bench_conv2d bench_elementwise bench_gather bench_max_pool)
  nnr_kernel_bench(${name})
endforeach()
# The CUDA launchers alone (CUDA builds only).
if(NOT NNR_HAVE_CUDA)
  return()
endif()
foreach(name bench_masked_update bench_softmax_cross_entropy bench_reduce)
  nnr_kernel_bench(${name})
endforeach()
