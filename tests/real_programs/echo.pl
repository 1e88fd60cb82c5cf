#!/usr/bin/perl
# echo.pl - a FastCGI application on Perl's FCGI module (Debian's
# libfcgi-perl, whose FCGI.so links libfcgi.so.0), for
# tests/real_programs.rs, which runs it with LD_LIBRARY_PATH pointing at our
# library.
#
# Usage: echo.pl ADDRESS  (e.g. 127.0.0.1:9000; FCGI::OpenSocket, i.e.
# FCGX_OpenSocket). Each request gets the parameters as sorted NAME=value
# lines, an empty line, then its body (read to EOF) byte for byte; the
# header X-Count counts the requests. STDERR_TEXT, if set, goes to stderr.
use strict;
use warnings;
use FCGI;

my ($address) = @ARGV;
die "usage: $0 ADDRESS\n" unless defined $address;
my $socket = FCGI::OpenSocket($address, 10);
die "FCGI::OpenSocket($address) failed\n" unless defined $socket;

my %env;
my $request = FCGI::Request(\*STDIN, \*STDOUT, \*STDERR, \%env, $socket);
my $count = 0;
while ($request->Accept() >= 0) {
    $count++;
    my $body = '';
    while (1) {
        my $n = read(STDIN, my $chunk, 65536);
        last unless $n;
        $body .= $chunk;
    }
    print "Content-Type: text/plain\r\nX-Count: $count\r\n\r\n";
    print "$_=$env{$_}\n" for sort keys %env;
    print "\n", $body;
    print STDERR "perl-stderr: $env{STDERR_TEXT}\n" if defined $env{STDERR_TEXT};
    $request->Finish();
}
FCGI::CloseSocket($socket);
