# End-to-end training throughput of nnr, compared with peers by bench/mlp_peers.sh.
add_executable(bench_train_epoch ${CMAKE_CURRENT_SOURCE_DIR}/train_epoch.cpp)
target_link_libraries(bench_train_epoch PRIVATE nnr_trainer CLI11::CLI11 nlohmann_json::nlohmann_json)
# One training step on a fixed on-device batch (CPU or CUDA), compared with PyTorch eager by
# bench/gpu_mlp_peers.sh.
add_executable(bench_train_step ${CMAKE_CURRENT_SOURCE_DIR}/train_step.cpp)
target_link_libraries(bench_train_step PRIVATE nnr_trainer CLI11::CLI11 nlohmann_json::nlohmann_json)
if(TARGET nnr_kernels)
  target_link_libraries(bench_train_step PRIVATE nnr_kernels)  # reads the device allocator's counters
endif()
add_executable(bench_selective_step ${CMAKE_CURRENT_SOURCE_DIR}/selective_step.cpp)  # bench/selective_step.sh
target_link_libraries(bench_selective_step PRIVATE nnr_engine nnr_bandit_selectors CLI11::CLI11 nlohmann_json::nlohmann_json)
