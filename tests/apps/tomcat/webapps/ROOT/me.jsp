<%@ page contentType="text/plain; charset=UTF-8" session="false" %><%
  jakarta.servlet.http.HttpSession s = request.getSession(false);
  Object user = s == null ? null : s.getAttribute("user");
  out.print(user == null ? "anonymous" : user.toString());
%>
