# cmake -DINPUT=<object> -DOUTPUT=<cpp> -P embed_object.cmake
# Writes the BPF object as a C++ byte array (drop_object.hpp declares it).
file(READ ${INPUT} hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       bytes "${bytes}")
file(WRITE ${OUTPUT}
     "// Generated from ctquota_drops.bpf.c by embed_object.cmake: do not edit.\n"
     "#include \"drops/drop_object.hpp\"\n\n"
     "namespace ctquota::drops {\n\n"
     "alignas(8) const unsigned char kDropObject[] = {\n${bytes}\n};\n"
     "const std::size_t kDropObjectSize = ${size};\n\n"
     "}  // namespace ctquota::drops\n")
