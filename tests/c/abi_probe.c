/*
 * abi_probe.c - prints the layout of every type of fcgiapp.h and fastcgi.h
 * (size, alignment, and offset and size of each field) and the value and
 * size of every constant. tests/abi.rs compiles it against our include/
 * and against the original headers; the outputs must be identical.
 */
#include <fcgiapp.h>
#include <fastcgi.h>

#include <stddef.h>
#include <stdio.h>

#define TYPE(T) \
    printf("%s size=%zu align=%zu\n", #T, sizeof(T), (size_t)_Alignof(T))
#define FIELD(T, f)                                                             \
    printf("  %s.%s offset=%zu size=%zu\n", #T, #f, offsetof(T, f), \
           sizeof(((T *)0)->f))
#define INT(c) printf("%s = %ld (size %zu)\n", #c, (long)(c), sizeof(c))
#define STR(c) printf("%s = \"%s\" (size %zu)\n", #c, c, sizeof(c))

int main(void)
{
    TYPE(FCGX_Stream);
    FIELD(FCGX_Stream, rdNext);
    FIELD(FCGX_Stream, wrNext);
    FIELD(FCGX_Stream, stop);
    FIELD(FCGX_Stream, stopUnget);
    FIELD(FCGX_Stream, isReader);
    FIELD(FCGX_Stream, isClosed);
    FIELD(FCGX_Stream, wasFCloseCalled);
    FIELD(FCGX_Stream, FCGI_errno);
    FIELD(FCGX_Stream, fillBuffProc);
    FIELD(FCGX_Stream, emptyBuffProc);
    FIELD(FCGX_Stream, data);

    TYPE(FCGX_Request);
    FIELD(FCGX_Request, requestId);
    FIELD(FCGX_Request, role);
    FIELD(FCGX_Request, in);
    FIELD(FCGX_Request, out);
    FIELD(FCGX_Request, err);
    FIELD(FCGX_Request, envp);
    FIELD(FCGX_Request, paramsPtr);
    FIELD(FCGX_Request, ipcFd);
    FIELD(FCGX_Request, isBeginProcessed);
    FIELD(FCGX_Request, keepConnection);
    FIELD(FCGX_Request, appStatus);
    FIELD(FCGX_Request, nWriters);
    FIELD(FCGX_Request, flags);
    FIELD(FCGX_Request, listen_sock);
    FIELD(FCGX_Request, detached);

    TYPE(FCGX_ParamArray);

    TYPE(FCGI_Header);
    FIELD(FCGI_Header, version);
    FIELD(FCGI_Header, type);
    FIELD(FCGI_Header, requestIdB1);
    FIELD(FCGI_Header, requestIdB0);
    FIELD(FCGI_Header, contentLengthB1);
    FIELD(FCGI_Header, contentLengthB0);
    FIELD(FCGI_Header, paddingLength);
    FIELD(FCGI_Header, reserved);

    TYPE(FCGI_BeginRequestBody);
    FIELD(FCGI_BeginRequestBody, roleB1);
    FIELD(FCGI_BeginRequestBody, roleB0);
    FIELD(FCGI_BeginRequestBody, flags);
    FIELD(FCGI_BeginRequestBody, reserved);

    TYPE(FCGI_BeginRequestRecord);
    FIELD(FCGI_BeginRequestRecord, header);
    FIELD(FCGI_BeginRequestRecord, body);

    TYPE(FCGI_EndRequestBody);
    FIELD(FCGI_EndRequestBody, appStatusB3);
    FIELD(FCGI_EndRequestBody, appStatusB2);
    FIELD(FCGI_EndRequestBody, appStatusB1);
    FIELD(FCGI_EndRequestBody, appStatusB0);
    FIELD(FCGI_EndRequestBody, protocolStatus);
    FIELD(FCGI_EndRequestBody, reserved);

    TYPE(FCGI_EndRequestRecord);
    FIELD(FCGI_EndRequestRecord, header);
    FIELD(FCGI_EndRequestRecord, body);

    TYPE(FCGI_UnknownTypeBody);
    FIELD(FCGI_UnknownTypeBody, type);
    FIELD(FCGI_UnknownTypeBody, reserved);

    TYPE(FCGI_UnknownTypeRecord);
    FIELD(FCGI_UnknownTypeRecord, header);
    FIELD(FCGI_UnknownTypeRecord, body);

    /* fcgiapp.h */
    INT(FCGX_UNSUPPORTED_VERSION);
    INT(FCGX_PROTOCOL_ERROR);
    INT(FCGX_PARAMS_ERROR);
    INT(FCGX_CALL_SEQ_ERROR);
    INT(FCGI_FAIL_ACCEPT_ON_INTR);

    /* fastcgi.h */
    INT(FCGI_LISTENSOCK_FILENO);
    INT(FCGI_MAX_LENGTH);
    INT(FCGI_HEADER_LEN);
    INT(FCGI_VERSION_1);
    INT(FCGI_BEGIN_REQUEST);
    INT(FCGI_ABORT_REQUEST);
    INT(FCGI_END_REQUEST);
    INT(FCGI_PARAMS);
    INT(FCGI_STDIN);
    INT(FCGI_STDOUT);
    INT(FCGI_STDERR);
    INT(FCGI_DATA);
    INT(FCGI_GET_VALUES);
    INT(FCGI_GET_VALUES_RESULT);
    INT(FCGI_UNKNOWN_TYPE);
    INT(FCGI_MAXTYPE);
    INT(FCGI_NULL_REQUEST_ID);
    INT(FCGI_KEEP_CONN);
    INT(FCGI_RESPONDER);
    INT(FCGI_AUTHORIZER);
    INT(FCGI_FILTER);
    INT(FCGI_REQUEST_COMPLETE);
    INT(FCGI_CANT_MPX_CONN);
    INT(FCGI_OVERLOADED);
    INT(FCGI_UNKNOWN_ROLE);
    STR(FCGI_MAX_CONNS);
    STR(FCGI_MAX_REQS);
    STR(FCGI_MPXS_CONNS);
    /* macros that expand to an expression must still be one operand */
    printf("-FCGX_PROTOCOL_ERROR = %d, 2*FCGI_MAXTYPE = %d\n", -FCGX_PROTOCOL_ERROR,
           2 * FCGI_MAXTYPE);
    return 0;
}
