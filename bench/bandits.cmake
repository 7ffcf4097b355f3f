# bandit_regret: mean cumulative regret of bandit policies on the test beds the tests use.
add_executable(bandit_regret ${CMAKE_CURRENT_LIST_DIR}/bandit_regret.cpp)
target_link_libraries(bandit_regret PRIVATE nnr_bandits CLI11::CLI11 nlohmann_json::nlohmann_json)
