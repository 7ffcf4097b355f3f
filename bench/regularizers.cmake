# regularizers_permuted: permuted Fashion-MNIST continual-learning comparison of the
# regularizers (bench/regularizers_permuted.sh runs it and records bench/results/).
add_executable(regularizers_permuted ${CMAKE_CURRENT_LIST_DIR}/regularizers_permuted.cpp)
target_link_libraries(regularizers_permuted PRIVATE nnr_trainer nnr_regularizers CLI11::CLI11
                      nlohmann_json::nlohmann_json)
