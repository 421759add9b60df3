# esr_add_handler(NAME SOURCES ... [LIBS ...] [OUTPUT_DIR dir]): builds an esr handler plugin, NAME.so (no "lib"
# prefix), against esr::handler: the public headers (esr/handler.h, esr/json.h) and the system's SQLite and cJSON, which
# a plugin must share with the host (the loader refuses a plugin with another instance). Symbols are hidden by default:
# the plugin exports only what ESR_HANDLER_DECLARE_ABI and ESR_HANDLER_EXPORT mark. The same function serves esr's own
# tree and, installed with the CMake package (find_package(esr)), handlers built anywhere else.
function(esr_add_handler name)
  cmake_parse_arguments(H "" "OUTPUT_DIR" "SOURCES;LIBS" ${ARGN})
  add_library(${name} MODULE ${H_SOURCES})
  set_target_properties(${name} PROPERTIES PREFIX "" C_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden)
  if(H_OUTPUT_DIR)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${H_OUTPUT_DIR})
  endif()
  target_link_libraries(${name} PRIVATE esr::handler ${H_LIBS})
endfunction()
