"""What the tests share: paths, the backing services, the command lines, HTTP and the
browser. Importing a helper changes nothing: no environment, no files, no servers."""
