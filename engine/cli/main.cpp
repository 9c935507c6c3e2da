// rove command-line entry point (filled in by the machine work).
#include <cstdio>
int main() {
  std::fprintf(stderr, "rove: not yet runnable\n");
  return 1;
}
