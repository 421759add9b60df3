# esr_add_handler(NAME SOURCES ...): a handler plugin built as a module, output as <build>/handlers/<NAME>.so.
# Plugins include only esr/handler.h and never link the host.
function(esr_add_handler name)
  cmake_parse_arguments(H "" "OUTPUT_DIR" "SOURCES;LIBS" ${ARGN})
  if(NOT H_OUTPUT_DIR)
    set(H_OUTPUT_DIR ${CMAKE_BINARY_DIR}/handlers)
  endif()
  add_library(${name} MODULE ${H_SOURCES})
  set_target_properties(${name} PROPERTIES PREFIX "" LIBRARY_OUTPUT_DIRECTORY ${H_OUTPUT_DIR}
                                           C_VISIBILITY_PRESET hidden)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/runtime/include)
  target_link_libraries(${name} PRIVATE PkgConfig::SQLITE3 PkgConfig::CJSON ${H_LIBS})
endfunction()

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
