# Kernel microbenchmarks (CUDA builds only): one binary per kernel family, common flags
# --n --repeats --warmups --json, each checked against the CPU reference before it is timed.
if(NOT NNR_HAVE_CUDA)
  return()
endif()
execute_process(COMMAND git rev-parse --short HEAD WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                OUTPUT_VARIABLE NNR_BENCH_GIT_HASH OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
foreach(name bench_masked_update bench_softmax_cross_entropy bench_reduce)
  add_executable(${name} ${CMAKE_CURRENT_LIST_DIR}/${name}.cpp)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE nnr_kernels nnr_engine_ops nnr_engine_optim)
  target_compile_definitions(${name} PRIVATE NNR_GIT_HASH="${NNR_BENCH_GIT_HASH}")
endforeach()
