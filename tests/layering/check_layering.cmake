# Fails if any #include in the layered source directories points up the chain
# launch -> runtime -> parallel -> models -> kernels (docs/DESIGN.md §4).
# Usage: cmake -DROOT=<source root> -P check_layering.cmake
set(layers kernels models parallel runtime launch)  # lowest first
if(NOT ROOT)
  message(FATAL_ERROR "check_layering: pass -DROOT=<source root>")
endif()
set(violations "")
foreach(layer IN LISTS layers)
  list(FIND layers ${layer} own_rank)
  file(GLOB_RECURSE files "${ROOT}/${layer}/*.h" "${ROOT}/${layer}/*.cpp"
                          "${ROOT}/${layer}/*.cu" "${ROOT}/${layer}/*.cuh")
  foreach(f IN LISTS files)
    file(STRINGS "${f}" includes REGEX "^[ \t]*#[ \t]*include[ \t]*\"[a-z_]+/")
    foreach(line IN LISTS includes)
      string(REGEX REPLACE "^[^\"]*\"([a-z_]+)/.*$" "\\1" target "${line}")
      list(FIND layers ${target} target_rank)
      if(target_rank GREATER own_rank)
        file(RELATIVE_PATH rel "${ROOT}" "${f}")
        string(STRIP "${line}" line)
        string(APPEND violations "  ${rel}: ${line} (${layer} may not include ${target})\n")
      endif()
    endforeach()
  endforeach()
endforeach()
if(violations)
  message(FATAL_ERROR "includes that point up the layer chain launch -> runtime -> parallel -> models -> kernels:\n${violations}")
endif()
message(STATUS "layering: every include points down the chain")
