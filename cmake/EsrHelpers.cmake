# Build helpers of esr's own tree. esr::handler here is the in-tree twin of the installed CMake package's target, so
# that the reference handler and the test plugins are built exactly as a user's handler is (cmake/esrHandler.cmake).
add_library(esr_handler_sdk INTERFACE)
target_include_directories(esr_handler_sdk INTERFACE $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/runtime/include>)
target_link_libraries(esr_handler_sdk INTERFACE PkgConfig::SQLITE3 PkgConfig::CJSON)
add_library(esr::handler ALIAS esr_handler_sdk)
include(${CMAKE_CURRENT_LIST_DIR}/esrHandler.cmake)

# In this tree, plugins go to <build>/handlers unless an OUTPUT_DIR is given.
set(CMAKE_LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/handlers)

# esr_add_test(NAME SOURCES ... [LIBS ...] [LABELS ...] [TIMEOUT s]): one cmocka executable per test file.
function(esr_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE PkgConfig::CMOCKA ${T_LIBS})
  target_compile_definitions(${name} PRIVATE
    ESR_BIN="$<TARGET_FILE:esr>"
    ESR_BUILD_DIR="${CMAKE_BINARY_DIR}"
    ESR_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT})
endfunction()
