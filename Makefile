# Builds with cargo and installs the same layout as libfcgi's
# `./configure && make install`:
#   $(PREFIX)/lib/libfcgi.so.0.0.0, libfcgi.so.0 -> it, libfcgi.so -> libfcgi.so.0
#   $(PREFIX)/lib/libfcgi.a
#   $(PREFIX)/include/fcgiapp.h fcgi_stdio.h fastcgi.h fcgi_ext.h
#   $(PREFIX)/lib/pkgconfig/fcgi.pc
#   $(PREFIX)/bin/fcgi-client
# `make deb` packages the runtime part of it for Debian (scripts/build-deb.sh).
# Usage: make && sudo make install [PREFIX=/usr/local] [DESTDIR=...]; make uninstall.
# (A plain Makefile rather than cargo-c: nothing to install first, and the
# layout is spelled out here line by line.)

PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
BINDIR  ?= $(PREFIX)/bin
PCDIR   ?= $(LIBDIR)/pkgconfig
CARGO   ?= cargo
INSTALL ?= install

# The libfcgi API level this library implements, and our own version.
API_VERSION := 2.4.7
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
HEADERS := $(wildcard include/fcgiapp.h include/fcgi_stdio.h include/fastcgi.h include/fcgi_ext.h)

.PHONY: all install uninstall clean demo test windows deb

# One cargo invocation for the library and fcgi-client: both get the same
# (workspace-unified) dependency features, so neither build invalidates the
# other's (two invocations relinked the library each time), and a tree
# built by `cargo build --release --workspace` is reused as it is.
all:
	$(CARGO) build --release -p fcgi -p fcgi-cli

install: all
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PCDIR) $(DESTDIR)$(BINDIR)
	$(INSTALL) -m 755 target/release/libfcgi.so $(DESTDIR)$(LIBDIR)/libfcgi.so.0.0.0
	ln -sf libfcgi.so.0.0.0 $(DESTDIR)$(LIBDIR)/libfcgi.so.0
	ln -sf libfcgi.so.0 $(DESTDIR)$(LIBDIR)/libfcgi.so
	$(INSTALL) -m 644 target/release/libfcgi.a $(DESTDIR)$(LIBDIR)/libfcgi.a
	$(INSTALL) -m 644 $(HEADERS) $(DESTDIR)$(INCDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@API_VERSION@|$(API_VERSION)|' -e 's|@VERSION@|$(VERSION)|' fcgi.pc.in > $(DESTDIR)$(PCDIR)/fcgi.pc
	chmod 644 $(DESTDIR)$(PCDIR)/fcgi.pc
	$(INSTALL) -m 755 target/release/fcgi-client $(DESTDIR)$(BINDIR)/fcgi-client

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libfcgi.so.0.0.0 $(DESTDIR)$(LIBDIR)/libfcgi.so.0 \
	      $(DESTDIR)$(LIBDIR)/libfcgi.so $(DESTDIR)$(LIBDIR)/libfcgi.a \
	      $(DESTDIR)$(PCDIR)/fcgi.pc $(DESTDIR)$(BINDIR)/fcgi-client
	rm -f $(addprefix $(DESTDIR)$(INCDIR)/,$(notdir $(HEADERS)))

demo:
	scripts/demo.sh

# The Debian package libfcgi0-rs, from the layout of `make install` above
# (README, "Debian package"): target/debian/libfcgi0-rs_<version>-1_<arch>.deb.
deb:
	scripts/build-deb.sh

# Windows (cross-built with mingw-w64; README, Windows): libfcgi.dll, its
# import library libfcgi.dll.a (for mingw gcc: -L$(WIN_OUT) -lfcgi) and
# libfcgi.def (the export list, for `lib /def:libfcgi.def` with MSVC), in
# $(WIN_OUT). cargo names the DLL fcgi.dll after the crate; build.rs makes it
# call itself libfcgi.dll and makes cargo's libfcgi.dll.a import from that
# name, so the copy below is all the renaming needed.
WIN_TARGET ?= x86_64-pc-windows-gnu
MINGW      ?= x86_64-w64-mingw32-
WIN_BUILD  := $(or $(CARGO_TARGET_DIR),target)/$(WIN_TARGET)/release
WIN_OUT    ?= target/windows

windows:
	$(CARGO) build --release --lib -p fcgi --target $(WIN_TARGET)
	mkdir -p $(WIN_OUT)
	cp $(WIN_BUILD)/fcgi.dll $(WIN_OUT)/libfcgi.dll
	cp $(WIN_BUILD)/libfcgi.dll.a $(WIN_OUT)/libfcgi.dll.a
	{ echo 'LIBRARY libfcgi.dll'; echo 'EXPORTS'; \
	  $(MINGW)objdump -p $(WIN_OUT)/libfcgi.dll \
	  | sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$$/s/^\s*\[ *[0-9]*\] \(.*\)$$/\1/p' \
	  | sed 's/^_fcgi_sF$$/_fcgi_sF DATA/'; } > $(WIN_OUT)/libfcgi.def
	@echo "$(WIN_OUT): libfcgi.dll, libfcgi.dll.a, libfcgi.def ($$(tail -n +3 $(WIN_OUT)/libfcgi.def | wc -l) exports)"

test:
	bash .ci/run

clean:
	$(CARGO) clean
