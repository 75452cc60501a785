from buildkit import package_fixtures

one_thread, recipe = package_fixtures()
