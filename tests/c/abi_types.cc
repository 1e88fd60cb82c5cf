/*
 * abi_types.cc - prints the exact C++ type (typeid, i.e. the mangled type)
 * of every function of fcgiapp.h, every field of its structs and of
 * fastcgi.h's, and every constant. Compiled against our include/ and the
 * original headers by tests/abi.rs; the outputs must be identical, so any
 * difference in a prototype (parameter or return type, constness,
 * variadic-ness, va_list) or a field type shows up.
 */
#include <fcgiapp.h>
#include <fastcgi.h>

#include <cstdio>
#include <typeinfo>

#define FN(f) std::printf("fn %s: %s\n", #f, typeid(f).name())
#define FIELD(T, f) std::printf("field %s.%s: %s\n", #T, #f, typeid(((T *)0)->f).name())
#define CONST(c) std::printf("const %s: %s\n", #c, typeid(c).name())

int main()
{
    FN(FCGX_IsCGI);
    FN(FCGX_Init);
    FN(FCGX_OpenSocket);
    FN(FCGX_InitRequest);
    FN(FCGX_Accept_r);
    FN(FCGX_Finish_r);
    FN(FCGX_Free);
    FN(FCGX_Accept);
    FN(FCGX_Finish);
    FN(FCGX_StartFilterData);
    FN(FCGX_SetExitStatus);
    FN(FCGX_GetParam);
    FN(FCGX_GetChar);
    FN(FCGX_UnGetChar);
    FN(FCGX_GetStr);
    FN(FCGX_GetLine);
    FN(FCGX_HasSeenEOF);
    FN(FCGX_PutChar);
    FN(FCGX_PutStr);
    FN(FCGX_PutS);
    FN(FCGX_FPrintF);
    FN(FCGX_VFPrintF);
    FN(FCGX_FFlush);
    FN(FCGX_FClose);
    FN(FCGX_GetError);
    FN(FCGX_ClearError);
    FN(FCGX_CreateWriter);
    FN(FCGX_FreeStream);
    FN(FCGX_ShutdownPending);
    FN(FCGX_Attach);
    FN(FCGX_Detach);

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
    std::printf("typedef FCGX_ParamArray: %s\n", typeid(FCGX_ParamArray).name());

    FIELD(FCGI_Header, version);
    FIELD(FCGI_Header, type);
    FIELD(FCGI_Header, requestIdB1);
    FIELD(FCGI_Header, requestIdB0);
    FIELD(FCGI_Header, contentLengthB1);
    FIELD(FCGI_Header, contentLengthB0);
    FIELD(FCGI_Header, paddingLength);
    FIELD(FCGI_Header, reserved);
    FIELD(FCGI_BeginRequestBody, roleB1);
    FIELD(FCGI_BeginRequestBody, roleB0);
    FIELD(FCGI_BeginRequestBody, flags);
    FIELD(FCGI_BeginRequestBody, reserved);
    FIELD(FCGI_BeginRequestRecord, header);
    FIELD(FCGI_BeginRequestRecord, body);
    FIELD(FCGI_EndRequestBody, appStatusB3);
    FIELD(FCGI_EndRequestBody, appStatusB2);
    FIELD(FCGI_EndRequestBody, appStatusB1);
    FIELD(FCGI_EndRequestBody, appStatusB0);
    FIELD(FCGI_EndRequestBody, protocolStatus);
    FIELD(FCGI_EndRequestBody, reserved);
    FIELD(FCGI_EndRequestRecord, header);
    FIELD(FCGI_EndRequestRecord, body);
    FIELD(FCGI_UnknownTypeBody, type);
    FIELD(FCGI_UnknownTypeBody, reserved);
    FIELD(FCGI_UnknownTypeRecord, header);
    FIELD(FCGI_UnknownTypeRecord, body);

    CONST(FCGX_UNSUPPORTED_VERSION);
    CONST(FCGX_PROTOCOL_ERROR);
    CONST(FCGX_PARAMS_ERROR);
    CONST(FCGX_CALL_SEQ_ERROR);
    CONST(FCGI_FAIL_ACCEPT_ON_INTR);
    CONST(FCGI_LISTENSOCK_FILENO);
    CONST(FCGI_MAX_LENGTH);
    CONST(FCGI_HEADER_LEN);
    CONST(FCGI_VERSION_1);
    CONST(FCGI_BEGIN_REQUEST);
    CONST(FCGI_ABORT_REQUEST);
    CONST(FCGI_END_REQUEST);
    CONST(FCGI_PARAMS);
    CONST(FCGI_STDIN);
    CONST(FCGI_STDOUT);
    CONST(FCGI_STDERR);
    CONST(FCGI_DATA);
    CONST(FCGI_GET_VALUES);
    CONST(FCGI_GET_VALUES_RESULT);
    CONST(FCGI_UNKNOWN_TYPE);
    CONST(FCGI_MAXTYPE);
    CONST(FCGI_NULL_REQUEST_ID);
    CONST(FCGI_KEEP_CONN);
    CONST(FCGI_RESPONDER);
    CONST(FCGI_AUTHORIZER);
    CONST(FCGI_FILTER);
    CONST(FCGI_REQUEST_COMPLETE);
    CONST(FCGI_CANT_MPX_CONN);
    CONST(FCGI_OVERLOADED);
    CONST(FCGI_UNKNOWN_ROLE);
    CONST(FCGI_MAX_CONNS);
    CONST(FCGI_MAX_REQS);
    CONST(FCGI_MPXS_CONNS);
    return 0;
}
